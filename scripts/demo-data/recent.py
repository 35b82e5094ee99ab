"""Moves a tab-separated story's `timestamp`s (key <TAB> JSON per line) so that its last event was an hour ago, the
gaps between events kept. Reads stdin, writes stdout."""
import datetime
import json
import sys

lines = [line.rstrip("\n").split("\t", 1) for line in sys.stdin if line.strip()]
def parse(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
times = [parse(json.loads(value)["timestamp"]) for _, value in lines]
shift = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1) - max(times)
for (key, value), at in zip(lines, times):
    body = json.loads(value)
    body["timestamp"] = (at + shift).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    print(key + "\t" + json.dumps(body, separators=(",", ":")))
