#!/usr/bin/env python3
"""The baseline for the convert_throughput bench: a converter written the way the original
tool's parser worked (../shared/seed: regexes over the whole log held in memory, then the
`perfetto` package's TraceProtoBuilder), one trace (slices per thread, arguments as debug
annotations), no text log. It reads bthost's format 2 records (`<id> <tid> <exit> <dur>
<fields>`, `+<id> <exit delta> <dur> <fields>` continuing the thread's record) with the
log's own schema lines (`#S id pack name phase fields`).

Prints `records N` on stdout. Usage: py_convert.py LOG OUT.pftrace
"""
import re
import sys

from perfetto.trace_builder.proto_builder import TraceProtoBuilder
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import TrackEvent

SCHEMA = re.compile(r"^#S ([0-9a-f]+) (\S+) (\S+) (\S+)(.*)$")
THREAD = re.compile(r"^T ([0-9a-f]+) ([0-9a-f]+) (.*)$")
RECORD = re.compile(r"^([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)((?: [0-9a-f]+)*)$")
CONT = re.compile(r"^\+([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)((?: [0-9a-f]+)*)$")


def main(log, out):
    schema, threads, calls = {}, {}, []
    last = None  # (tid, exit) of the previous record, which a continuation follows
    records = 0
    with open(log) as f:
        for line in f:
            m = RECORD.match(line)
            if m:
                rid, tid, exit_, dur = (int(x, 16) for x in m.group(1, 2, 3, 4))
                calls.append((rid, tid, exit_ - dur, exit_, m.group(5).split()))
                last = (tid, exit_)
                records += 1
                continue
            m = CONT.match(line)
            if m and last:
                rid, delta, dur = (int(x, 16) for x in m.group(1, 2, 3))
                exit_ = last[1] + delta
                calls.append((rid, last[0], exit_ - dur, exit_, m.group(4).split()))
                last = (last[0], exit_)
                records += 1
                continue
            m = SCHEMA.match(line)
            if m:
                names = [fl.split(":")[0] for fl in m.group(5).split()]
                schema[int(m.group(1), 16)] = (m.group(3), names)
                continue
            m = THREAD.match(line)
            if m:
                threads[int(m.group(2), 16)] = (int(m.group(1), 16), m.group(3))
    calls.sort(key=lambda c: (c[2], -c[3]))

    builder = TraceProtoBuilder()
    uuids = {}
    for tid, (pid, comm) in sorted(threads.items()):
        uuids[tid] = len(uuids) + 1
        p = builder.add_packet()
        p.track_descriptor.uuid = uuids[tid]
        p.track_descriptor.thread.pid = pid
        p.track_descriptor.thread.tid = tid
        p.track_descriptor.thread.thread_name = comm
    # Slices end in end order, before a later slice begins.
    import heapq
    open_ends = []

    def end_until(ts):
        while open_ends and open_ends[0][0] <= ts:
            end, uuid = heapq.heappop(open_ends)
            p = builder.add_packet()
            p.timestamp = end
            p.trusted_packet_sequence_id = 1
            p.track_event.type = TrackEvent.TYPE_SLICE_END
            p.track_event.track_uuid = uuid

    for rid, tid, start, end, fields in calls:
        end_until(start)
        name, names = schema.get(rid, (f"record {rid:x}", []))
        uuid = uuids.setdefault(tid, len(uuids) + 1)
        p = builder.add_packet()
        p.timestamp = start
        p.trusted_packet_sequence_id = 1
        p.track_event.type = TrackEvent.TYPE_SLICE_BEGIN
        p.track_event.track_uuid = uuid
        p.track_event.name = name
        for n, v in zip(names, fields):
            a = p.track_event.debug_annotations.add()
            a.name = n
            a.uint_value = int(v, 16)
        heapq.heappush(open_ends, (end, uuid))
    end_until(float("inf"))
    with open(out, "wb") as f:
        f.write(builder.serialize())
    print(f"records {records}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
