#!/usr/bin/env python3
"""Decodes a bthost Perfetto trace with Perfetto's OFFICIAL generated schema (PyPI package
`perfetto`, perfetto_trace_pb2) and checks its structure the way viewers rely on it:

- the sequence's first packet clears incremental state; timestamps never go back (deltas
  on an incremental clock resolved as clock_snapshot.proto says: each is a delta from the
  sequence's previous packet on that clock, the first from the snapshot's time);
- every track is described before its first event; thread tracks have their process;
- interned names and string values are defined before use; END events are unnamed;
- slices are balanced, last-in-first-out, per track;
- flows as the trace processor reads them (flows v2, its track event importer): a
  `flow_ids` entry begins a flow on its slice, or, when the id is active, draws an arrow from
  the flow's last slice to this one and goes on; a `terminating_flow_ids` entry draws the
  arrow and ends the flow. Every flow begun must end; no terminating id may be inactive (the
  trace processor would drop it); an ended id is never used again; no arrow goes back in time.

Prints a JSON summary for the tests to assert on: tracks (with their uuids and parents),
slices (with their annotations, track and index), `flows` between threads' slices as [name,
tid, name, tid], and every arrow (those to the device tracks too, whose slices are on no
thread) as a pair of slice indices in `flow_pairs`, both in the order of (flow id, arrow); exits 1 with the list of problems if any rule is
broken.
Usage: check_trace.py TRACE.pftrace
"""
import json
import sys

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

CLEARED = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
BEGIN, END, INSTANT = pb.TrackEvent.TYPE_SLICE_BEGIN, pb.TrackEvent.TYPE_SLICE_END, pb.TrackEvent.TYPE_INSTANT


def main(path):
    trace = pb.Trace()
    with open(path, "rb") as f:
        trace.ParseFromString(f.read())
    errors = []
    tracks, names, ann_names, str_values = {}, {}, {}, {}
    # Incremental clocks (id -> current time) and the sequence's default clock.
    incremental, default_clock = {}, None
    # Flow id -> its last slice while active; the arrows drawn, as (id, n, from, to).
    stacks, slices, active, ended, arrows = {}, [], {}, set(), []
    last_ts = None
    for n, p in enumerate(trace.packet):
        if p.trusted_packet_sequence_id != 1:
            errors.append(f"packet {n}: sequence id {p.trusted_packet_sequence_id}")
        if n == 0 and not (p.sequence_flags & CLEARED):
            errors.append("first packet does not clear incremental state")
        if p.HasField("trace_packet_defaults") and p.trace_packet_defaults.HasField("timestamp_clock_id"):
            default_clock = p.trace_packet_defaults.timestamp_clock_id
        if p.HasField("clock_snapshot"):
            for c in p.clock_snapshot.clocks:
                if c.is_incremental:
                    incremental[c.clock_id] = c.timestamp
        if p.HasField("timestamp"):
            clock = p.timestamp_clock_id if p.HasField("timestamp_clock_id") else default_clock
            if clock in incremental:
                incremental[clock] += p.timestamp
                ts = incremental[clock]
            elif clock is not None and clock >= 64:
                errors.append(f"packet {n}: timestamp on clock {clock}, which no snapshot declared")
                ts = p.timestamp
            else:
                ts = p.timestamp
        else:
            ts = None
        if p.HasField("interned_data"):
            for e in p.interned_data.debug_annotation_string_values:
                str_values[e.iid] = e.str.decode("utf-8", "replace")
            for e in p.interned_data.event_names:
                names[e.iid] = e.name
            for e in p.interned_data.debug_annotation_names:
                ann_names[e.iid] = e.name
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            if d.HasField("parent_uuid") and d.parent_uuid not in tracks:
                errors.append(f"track {d.uuid} before its parent {d.parent_uuid}")
            tracks[d.uuid] = {
                "uuid": d.uuid,
                "name": d.name,
                "pid": d.thread.pid if d.HasField("thread") else (d.process.pid if d.HasField("process") else None),
                "tid": d.thread.tid if d.HasField("thread") else None,
                "thread_name": d.thread.thread_name if d.HasField("thread") else None,
                "process_name": d.process.process_name if d.HasField("process") else None,
                "parent": d.parent_uuid if d.HasField("parent_uuid") else None,
            }
        if not p.HasField("track_event"):
            continue
        if ts is None:
            errors.append(f"packet {n}: a track event without a timestamp")
            continue
        if last_ts is not None and ts < last_ts:
            errors.append(f"packet {n}: timestamp {ts} goes back from {last_ts}")
        last_ts = ts
        e = p.track_event
        if e.track_uuid not in tracks:
            errors.append(f"packet {n}: event on undescribed track {e.track_uuid}")
        stack = stacks.setdefault(e.track_uuid, [])
        if e.type == END:
            if e.HasField("name_iid") or e.HasField("name"):
                errors.append(f"packet {n}: a named END")
            if not stack:
                errors.append(f"packet {n}: END with no open slice on track {e.track_uuid}")
            else:
                s = stack.pop()
                s["dur"] = ts - s["ts"]
            continue
        if e.name_iid not in names:
            errors.append(f"packet {n}: name iid {e.name_iid} not interned before use")
        args = {}
        for a in e.debug_annotations:
            if a.name_iid not in ann_names:
                errors.append(f"packet {n}: annotation name iid {a.name_iid} not interned")
            which = a.WhichOneof("value")
            if which == "string_value_iid":
                if a.string_value_iid not in str_values:
                    errors.append(f"packet {n}: string value iid {a.string_value_iid} not interned")
                value = str_values.get(a.string_value_iid)
            else:
                value = getattr(a, which) if which else None
            args[ann_names.get(a.name_iid, "?")] = value
        s = {
            "track": e.track_uuid,
            "tid": tracks.get(e.track_uuid, {}).get("tid"),
            "name": names.get(e.name_iid),
            "ts": ts,
            "dur": 0,
            "args": args,
            "instant": e.type == INSTANT,
            "i": len(slices),
        }
        slices.append(s)
        for fid in e.flow_ids:
            if fid in ended:
                errors.append(f"flow {fid} used again after it ended")
            if fid in active:
                arrows.append((fid, len(arrows), active[fid], s))
            active[fid] = s
        for fid in e.terminating_flow_ids:
            if fid not in active:
                errors.append(f"flow {fid} ends where none is active")
                continue
            arrows.append((fid, len(arrows), active.pop(fid), s))
            ended.add(fid)
        if e.type == BEGIN:
            stack.append(s)
    for uuid, st in stacks.items():
        if st:
            errors.append(f"track {uuid}: {len(st)} slices never ended")
    for fid in active:
        errors.append(f"flow {fid} never ends")
    arrows.sort(key=lambda a: (a[0], a[1]))
    for fid, _, src, dst in arrows:
        if dst["ts"] < src["ts"]:
            errors.append(f"flow {fid} goes back in time")
    flows = [[src["name"], src["tid"], dst["name"], dst["tid"]]
             for _, _, src, dst in arrows if src["tid"] is not None and dst["tid"] is not None]
    flow_pairs = [[src["i"], dst["i"]] for _, _, src, dst in arrows]
    out = {"tracks": len(tracks), "track_list": list(tracks.values()), "slices": slices, "flows": flows,
           "flow_pairs": flow_pairs, "errors": errors}
    json.dump(out, sys.stdout, default=str)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
