#!/usr/bin/env python3
"""Where threads wait: time off the CPU, summed per thread and per blocking stack.

Record any command with every context switch and its stack, then read the record:

    perf record -e sched:sched_switch -g -a -o sched.data -- COMMAND...
    perf script -i sched.data -F comm,tid,time,event,trace,ip,sym > sched.txt
    Benchmarks/offcpu.py sched.txt [--comm coffer,r-initiated,coffer-io] [--top 30]

Each line of output: seconds off the CPU, how many times, the thread (name, id, the state
it left in: S sleeping, D waiting on the disk, R preempted) and the first user-space frames
of the stack it left from. A worker pool's idle threads show as long S waits in their
wait-for-work frame; a thread waiting on the disk shows D in pwrite or pread. This is what
found the pack writes blocking libdispatch's pool (docs/decisions/018).

perf's cpu-clock samples of kernel functions are unreliable in this project's VM (a copy
took a third of the samples of a run whose whole system time was 1.4 s); switch events
are not sampled, so their times hold.
"""
import argparse
import collections
import re

SWITCH = re.compile(r"([\d.]+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+)"
                    r" ==> next_comm=(.*?) next_pid=(\d+)")


def read_switches(path):
    """Yields (time, prev_comm, prev_tid, prev_state, next_tid, user_frames)."""
    event, frames = None, []
    with open(path, errors="replace") as f:
        for line in f:
            m = SWITCH.search(line)
            if m:
                if event:
                    yield (*event, frames)
                event = (float(m.group(1)), m.group(2), int(m.group(3)), m.group(4), int(m.group(6)))
                frames = []
            elif event and line.strip():
                parts = line.split()
                # Kernel frames (addresses ffffffff…) say only how it slept; the user frames say why.
                if len(parts) >= 2 and not parts[0].startswith("ffffffff") and parts[1] != "[unknown]":
                    frames.append(parts[1])
    if event:
        yield (*event, frames)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", help="output of perf script -F comm,tid,time,event,trace,ip,sym")
    parser.add_argument("--comm", default="coffer,r-initiated,coffer-io,maria",
                        help="comma-separated prefixes of thread names to report (default: %(default)s)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--frames", type=int, default=4, help="user frames shown per stack")
    args = parser.parse_args()
    prefixes = tuple(args.comm.split(","))

    left = {}  # tid -> (time it left the CPU, key)
    total, count = collections.Counter(), collections.Counter()
    for time, comm, tid, state, next_tid, frames in read_switches(args.script):
        if next_tid in left:
            since, key = left.pop(next_tid)
            total[key] += time - since
            count[key] += 1
        if comm.startswith(prefixes):
            stack = " < ".join(frame[:70] for frame in frames[:args.frames])
            left[tid] = (time, f"{comm} {tid} {state} {stack}")
    for key, seconds in total.most_common(args.top):
        print(f"{seconds:8.3f} s {count[key]:7d}  {key}")


if __name__ == "__main__":
    main()
