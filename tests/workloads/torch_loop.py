"""N ranks of a PyTorch-shaped training loop in Python, driving the asynchronous HIP/RCCL
stand-ins (tests/standins) through ctypes, for the stack tests (tests/tests/stacks_taken.rs).

    python3 torch_loop.py STANDINS_DIR [-n N] [-k K] [-s R:I] [-t MS]

The parent gets the unique id and forks the ranks. Rank r: a comm stream, an event, the
communicator, buffers; each step i = 1..K: load_batch(i) (rank R stalls there before step I,
forever: a Python function that sleeps), ncclAllReduce on the comm stream, hipEventRecord, then
hipMemcpy to the host (loss.item(): waits for the collective). A watchdog thread polls
hipEventQuery(done) every 100 ms, as ProcessGroupNCCL's does (it keeps running while the job
hangs: the stack tests check that a dump leaves it running). Prints "rank r pid P" at its
start, "rank r step i ok" after each step, "rank r stalls in load_batch before step i".
"""

import ctypes
import os
import sys
import threading
import time

args = sys.argv[1:]
standins = args.pop(0)
nranks, steps, stall = 4, 10, (-1, -1)
while args:
    a = args.pop(0)
    if a == "-n":
        nranks = int(args.pop(0))
    elif a == "-k":
        steps = int(args.pop(0))
    elif a == "-t":
        # The stand-in's wait limit on the device (0: forever), as torch_loop.c's -t.
        os.environ["STANDIN_RCCL_TIMEOUT_MS"] = args.pop(0)
    elif a == "-s":
        r, i = args.pop(0).split(":")
        stall = (int(r), int(i))

hip = ctypes.CDLL(os.path.join(standins, "libamdhip64.so.5"))
rccl = ctypes.CDLL(os.path.join(standins, "librccl.so.1"))


class UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * 128)]


P = ctypes.c_void_p
COUNT = 1024
me = -1


def load_batch(step):
    """The rank's own code between steps: the straggler sleeps here."""
    if (me, step) == stall:
        print(f"rank {me} stalls in load_batch before step {step}", flush=True)
        while True:
            time.sleep(3600)


def train_step(step, send, recv, host, comm, stream, done):
    load_batch(step)
    # ncclAllReduce(send, recv, count, ncclFloat32 = 7, ncclSum = 0, comm, stream)
    rccl.ncclAllReduce(send, recv, ctypes.c_size_t(COUNT), 7, 0, comm, stream)
    hip.hipEventRecord(done, stream)
    # hipMemcpy(host, recv, bytes, hipMemcpyDeviceToHost = 2): loss.item()
    hip.hipMemcpy(host, recv, ctypes.c_size_t(COUNT * 4), 2)
    print(f"rank {me} step {step} ok", flush=True)


def watchdog(done):
    while True:
        hip.hipEventQuery(done)
        time.sleep(0.1)


def run_rank(uid):
    print(f"rank {me} pid {os.getpid()}", flush=True)
    hip.hipSetDevice(me % 2)
    stream, done, comm = P(), P(), P()
    # A blocking stream (as PyTorch's default one): hipMemcpy waits for its work.
    hip.hipStreamCreate(ctypes.byref(stream))
    hip.hipEventCreateWithFlags(ctypes.byref(done), 2)
    rccl.ncclCommInitRank(ctypes.byref(comm), nranks, uid, me)
    send, recv = P(), P()
    hip.hipMalloc(ctypes.byref(send), ctypes.c_size_t(COUNT * 4))
    hip.hipMalloc(ctypes.byref(recv), ctypes.c_size_t(COUNT * 4))
    host = (ctypes.c_float * COUNT)()
    threading.Thread(target=watchdog, args=(done,), daemon=True).start()
    for step in range(1, steps + 1):
        train_step(step, send, recv, host, comm, stream, done)


uid = UniqueId()
rccl.ncclGetUniqueId(ctypes.byref(uid))
kids = []
for r in range(nranks):
    pid = os.fork()
    if pid == 0:
        me = r
        try:
            run_rank(uid)
        finally:
            os._exit(0)
    kids.append(pid)
for k in kids:
    os.waitpid(k, 0)
