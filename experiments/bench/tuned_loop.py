"""The optimisation loop of a tuned PyTorch user, shared by the benchmark references (invert_reference.py
--tuned, split_reference_resnet.py --tuned): Adam whose cosine learning rate lives in a tensor (so that a
captured step reads each new value), and on CUDA three warm-up steps on a side stream, one whole step
captured in a CUDA graph, the others replayed."""
import math

import torch


def adam(var, lr, graphable):
    """Adam on `var`; with `graphable` (CUDA), capturable and with a tensor learning rate. Returns (opt, lr_t)."""
    lr_t = torch.tensor(lr, device=var.device)
    return torch.optim.Adam([var], lr=lr_t if graphable else lr, capturable=graphable), lr_t


def run(step, opt, lr_t, lr, steps, graphable):
    """Runs `step()` `steps` times under a cosine schedule from `lr`, replaying a CUDA graph when `graphable`."""
    def set_lr(k):
        v = 0.5 * lr * (1 + math.cos(math.pi * k / steps))
        if graphable:
            lr_t.fill_(v)
        else:
            opt.param_groups[0]["lr"] = v

    done = 0
    if graphable and steps > 3:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                set_lr(done)
                step()
                done += 1
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        while done < steps:
            set_lr(done)
            graph.replay()
            done += 1
    while done < steps:
        set_lr(done)
        step()
        done += 1
