"""The sandboxed child that trains one federated job, round after round.

``fl.py`` starts ``python -I -m syft_kernel.node.trainer`` in the same bubblewrap sandbox as a
code request (own user, no network, a filesystem of Python and its packages only, the seccomp
filter). It imports torch, checks itself and says hello, then reads its job: the model graph,
the training plan, its limits and the data (numbers only, in ``objfile``'s format). It rebuilds
the model from the graph with ``core.fl_graph`` (an interpreter: no code is generated or run from
the graph) and answers commands on its pipe until it is told to stop or killed:

- ``fit``: weights in (safetensors), the round's local training, weights and metrics out;
- ``evaluate``: weights in, loss and accuracy on the evaluation data out.

An error in a command is answered with its class (for the scientist) and its text (for the
owner's audit log only: a library's message can quote the data); the child keeps its state and
waits for the next command.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .sandbox import (
    EXIT_MEMORY,
    _fail,
    install_seccomp,
    lower_limits,
    read_exact,
    recv_json,
    recv_value,
    self_check,
    send_json,
)

MAX_WEIGHTS = 8 << 30


def _serve(jobs: Any, result: Any) -> None:
    import safetensors.torch
    import torch

    from syft_kernel.core import fl_graph, fl_train

    setup = recv_json(jobs)
    threads = int(setup["threads"])
    torch.set_num_threads(threads)
    lower_limits(setup["limits"])
    x, y = (torch.from_numpy(recv_value(jobs)) for _ in range(2))
    ex, ey = (torch.from_numpy(recv_value(jobs)) for _ in range(2)) if setup["evaluate"] else (None, None)
    checked = fl_graph.check_graph(setup["graph"], setup["max_parameters"])
    model = fl_graph.build_model(checked)
    fixed = [k for k, t in setup["graph"]["tensors"].items() if not t["trainable"]]  # the model's constants
    plan = setup["plan"]
    send_json(result, {"ready": True})
    while True:
        cmd = recv_json(jobs)
        if cmd.get("cmd") == "stop":
            return
        size = int(cmd["size"])
        if not 0 < size <= MAX_WEIGHTS:
            raise ValueError("the weights' size is out of range")
        data = bytes(read_exact(jobs, size))
        try:
            given = safetensors.torch.load(data)
            model.load_state_dict(given, strict=True)
            if cmd["cmd"] == "fit":
                metrics = fl_train.fit(model, x, y, plan, int(cmd["round"]))
                state = model.state_dict()
                if any(not torch.equal(state[k], given[k]) for k in fixed):  # defence in depth: no op writes them
                    raise PermissionError("the model wrote into one of its constant tensors")
                out = safetensors.torch.save({k: v.detach().contiguous() for k, v in model.state_dict().items()})
            else:
                assert ex is not None and ey is not None
                metrics, out = fl_train.evaluate(model, ex, ey, plan), b""
        except MemoryError:
            raise
        except Exception as e:  # the kind for the scientist, the text for the owner's log
            send_json(result, {"ok": False, "error": type(e).__name__, "detail": f"{type(e).__name__}: {e}"[:4000]})
            continue
        send_json(result, {"ok": True, "metrics": metrics, "size": len(out)})
        result.write(out)
        result.flush()


def main(argv: list[str]) -> None:
    probes = argv[argv.index("--") + 1 :] if "--" in argv else []
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    jobs = os.fdopen(os.dup(0), "rb")
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)

    import numpy  # noqa: F401  (the runtime, imported before the job arrives)
    import safetensors.torch  # noqa: F401
    import torch
    import torch.nn.functional  # noqa: F401

    from syft_kernel.core import codec, fl_graph, fl_train  # noqa: F401

    torch.set_num_interop_threads(1)
    # one optimizer step on a throwaway model: torch's first optimizer imports much of torch
    # (torch._dynamo, sympy), about 2 s; paid here, when the trainer starts, not in round 1
    warm = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(warm.parameters(), lr=0.1)
    warm(torch.zeros(1, 2)).sum().backward()
    opt.step()
    tree, buffers = codec.encode_value([numpy.zeros(2, dtype=numpy.float32), numpy.zeros(2, dtype=numpy.int64)])
    codec.decode_value(tree, [bytearray(memoryview(b).cast("B")) for b in buffers])
    install_seccomp()
    send_json(result, {"hello": self_check(probes)})
    _serve(jobs, result)
    result.close()
    os._exit(0)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except MemoryError:
        _fail(EXIT_MEMORY, "MemoryError: training used more memory than the owner allowed")
    except BaseException as e:
        _fail(1, f"{type(e).__name__}: {e}")
