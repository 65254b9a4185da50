"""The scaling and cost model of docs/performance.md, computed from one bench run.

``block(info, stages, warm)`` returns the model's generated text: every figure is computed here
from what bench/run.py measured (the handler's CPU and wall time per record for each payload
kind, the event's bytes per record, InfluxDB's CPU time per line) and from the named inputs
below, which are AWS's published prices and limits, not measurements. bench/run.py writes it
between the model markers of docs/performance.md, so the figures cannot drift from the run.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

# Inputs that are not measured here (AWS's published figures; change them for another region or
# price list and rerun bench/run.py).
PRICE_GB_S = 0.0000166667  # USD per GB-second, Lambda on x86, us-east-1, first tier
PRICE_REQUEST = 0.20 / 1_000_000  # USD per invocation
VCPU_MB = 1769  # memory at which a function has one full vCPU (CPU share scales with memory below it)
MEMORIES = (512, 1024, 1769)  # MB
BATCH = 10_000  # records per invocation: the event source's maximum batch size
RATES = (10_000, 100_000, 1_000_000)  # records/s
POLLER_BYTES_S = 5_000_000  # bytes/s one provisioned event poller moves ("about 5 MB/s")
POLLER_INVOCATIONS = 5  # concurrent invocations one event poller drives
VM_VCPU_HOUR = 0.08925 / 2  # USD per vCPU-hour of an always-on worker: c7i.large on demand, us-east-1
VM_UTILISATION = 0.7  # how busy an always-on worker's CPUs are kept (headroom for bursts and rebalancing)


CHUNK_LINES = 5000  # connect.influx.batch.lines, its default


def last_piece(n: int = BATCH, chunk: int = CHUNK_LINES) -> int:
    """Records in the last piece the handler maps of an ``n``-record batch: what is left to
    write once mapping ends (the handler's own schedule, handler.delivery.pieces)."""
    from handler.delivery import pieces

    start, stop = list(pieces(n, chunk))[-1]
    return stop - start


@dataclass(frozen=True)
class Kind:
    """What the run measured for one payload kind, per record."""

    name: str
    cpu_s: float  # CPU time of the handler's process (every thread) per record, warm, THROW
    wall_s: float  # wall time per record of the same calls, on the bench machine
    event_bytes: float  # bytes of the Lambda event per record (base64 value, coordinates, JSON)
    ingest_s: float  # InfluxDB's wall time per line for one whole-batch request (the floor's ingest)

    @property
    def tail_s(self) -> float:
        """A batch's write that no mapping hides: its last piece, at InfluxDB's measured rate
        (the rest is written while the handler maps, given an InfluxDB on cores of its own)."""
        return last_piece() * self.ingest_s

    def batch_s(self, memory_mb: int) -> float:
        """Duration of a full batch at ``memory_mb``: the CPU part stretches below one vCPU; above
        it nothing gets faster (one thread maps; the writer thread waits for InfluxDB)."""
        return BATCH * self.cpu_s * max(1.0, VCPU_MB / memory_mb) + self.tail_s

    def gb_s_per_million(self, memory_mb: int) -> float:
        return self.batch_s(memory_mb) * memory_mb / 1024 * (1_000_000 / BATCH)

    def usd_per_million(self, memory_mb: int) -> float:
        return self.gb_s_per_million(memory_mb) * PRICE_GB_S + 1_000_000 / BATCH * PRICE_REQUEST

    def concurrency(self, rate: float, memory_mb: int) -> float:
        """Invocations running at once at ``rate`` records/s (arrivals × duration)."""
        return rate / BATCH * self.batch_s(memory_mb)

    def pollers(self, rate: float, memory_mb: int) -> int:
        by_bytes = rate * self.event_bytes / POLLER_BYTES_S
        return max(1, math.ceil(max(by_bytes, self.concurrency(rate, memory_mb) / POLLER_INVOCATIONS)))

    def worker_vcpus(self, rate: float) -> int:
        """vCPUs of an always-on worker doing the same CPU work per record, at VM_UTILISATION."""
        return max(1, math.ceil(rate * self.cpu_s / VM_UTILISATION))


def kinds(stages: dict[str, Any], warm: dict[str, dict[str, Any]]) -> list[Kind]:
    out = []
    for name, st in stages.items():
        ingest = [x for case, r in warm.items() if case.split(":")[0] == name for x in r["ingest"]]
        out.append(Kind(name, st["handler_cpu"] / st["records"], st["handler"] / st["records"],
                        st["event_bytes"] / st["records"], statistics.median(ingest) / BATCH))
    return out


def influx_cpu_per_line(warm: dict[str, dict[str, Any]]) -> float:
    """InfluxDB's CPU time per line stored, the median over the warm cases of the run."""
    return statistics.median(r["influx_cpu_per_line"] for r in warm.values())


def _usd(x: float) -> str:
    return f"${x:.5f}" if x < 0.01 else f"${x:,.4f}" if x < 1 else f"${x:,.2f}"


def _rate(x: float) -> str:
    return f"{x / 1000:,.0f} k" if x < 1_000_000 else f"{x / 1_000_000:,.0f} M"


def block(info: dict[str, str], stages: dict[str, Any], warm: dict[str, dict[str, Any]]) -> str:
    ks = kinds(stages, warm)
    icpu = influx_cpu_per_line(warm)
    out = [f"From the bench run of {info['date']} (commit {info['commit']}, {info['nproc']} × {info['cpu']}, "
           "InfluxDB on the same machine): `./bench/run` rewrites this section.", "",
           "**Measured inputs** (bench/profile.py: a warm 10,000-record batch under THROW, median of 7; "
           "bench/run.py: InfluxDB's CPU over the warm cases):", "",
           "| payload | handler CPU per record | handler wall per record (this machine) "
           "| InfluxDB ingest per line (one request) | event bytes per record |",
           "|---|---|---|---|---|"]
    for k in ks:
        out.append(f"| {k.name} | **{k.cpu_s * 1e6:.1f} µs** | {k.wall_s * 1e6:.1f} µs | {k.ingest_s * 1e6:.1f} µs | "
                   f"{k.event_bytes:.0f} B |")
    out += ["", f"InfluxDB 1.x CPU per line stored: **{icpu * 1e6:.1f} µs** (one core: "
            f"{1 / icpu:,.0f} lines/s).", "",
            "**Named inputs** (not measured here): Lambda x86 us-east-1 at "
            f"${PRICE_GB_S:.10f} per GB-s and ${PRICE_REQUEST * 1e6:.2f} per million invocations; one vCPU at "
            f"{VCPU_MB} MB, less in proportion below; full batches of {BATCH:,} records; a provisioned event poller "
            f"moves {POLLER_BYTES_S / 1e6:.0f} MB/s and drives {POLLER_INVOCATIONS} invocations at once; a "
            "partition is in at most one invocation at a time (its records stay in order); an always-on worker's "
            f"vCPU at ${VM_VCPU_HOUR:.4f}/hour (c7i.large on demand), kept {VM_UTILISATION:.0%} busy. The bench "
            "machine's core stands for a Lambda vCPU.", "",
            f"Batch duration at M MB = 10,000 × CPU per record × max(1, 1769 / M) + the write no mapping hides "
            f"(the batch's last piece, {last_piece():,} lines, at the measured ingest per line); GB-s = duration "
            "× M / 1024; cost = GB-s × price + invocations × price. The handler's wall time on this machine is "
            "longer than its CPU time: InfluxDB and other work share its 2 cores; the model assumes an InfluxDB "
            "on cores of its own, as in production.", "",
            "### Lambda cost per million records", "",
            "| payload | memory | batch duration | GB-s per million records | USD per million records |",
            "|---|---|---|---|---|"]
    for k in ks:
        for m in MEMORIES:
            out.append(f"| {k.name} | {m} MB | {k.batch_s(m) * 1000:.0f} ms | {k.gb_s_per_million(m):.2f} | "
                       f"{_usd(k.usd_per_million(m))} |")
    out += ["", "Below one vCPU the CPU part of a batch stretches as much as the memory shrinks, so its GB-s "
            "stay the same; what changes with memory is the write's tail (billed at the memory's rate) and the "
            "duration, hence the concurrency below.", "",
            "### Scale: invocations, partitions, pollers, InfluxDB", "",
            "Invocations/s = rate / 10,000. Concurrency = invocations/s × batch duration; each partition holds "
            "at most one invocation, so the topic needs at least that many partitions. Pollers (provisioned "
            "mode) = the larger of bytes/s ÷ 5 MB/s and concurrency ÷ 5. InfluxDB cores = rate × its CPU per "
            "line.", "",
            "| payload | records/s | invocations/s | concurrency at 1769 / 512 MB | partitions (min.) | pollers "
            "at 1769 MB | InfluxDB cores | Lambda USD/hour at 1769 MB |",
            "|---|---|---|---|---|---|---|---|"]
    for k in ks:
        for r in RATES:
            c_fast, c_slow = k.concurrency(r, 1769), k.concurrency(r, 512)
            out.append(f"| {k.name} | {_rate(r)} | {r / BATCH:,.0f} | {c_fast:,.1f} / {c_slow:,.1f} | "
                       f"{max(1, math.ceil(c_fast)):,} | {k.pollers(r, 1769):,} | {r * icpu:,.1f} | "
                       f"{_usd(k.usd_per_million(1769) * r * 3600 / 1e6)} |")
    out += ["", f"**Where InfluxDB becomes the limit.** It spends {icpu / ks[0].cpu_s:.2f} × the handler's CPU "
            f"per JSON record on storing its line: at {_rate(RATES[-1])} records/s that is "
            f"{RATES[-1] * icpu:,.0f} cores of InfluxDB 1.x against {ks[0].concurrency(RATES[-1], 1769):,.0f} "
            "concurrent invocations. Lambda scales by adding partitions and invocations; one InfluxDB 1.x OSS "
            "node does not (writes to one node only), so past the cores of its largest machine the database, "
            "not the sink, is the bottleneck: shard the data across databases or nodes, or use a clustered "
            "InfluxDB.", "",
            "### The same rate on an always-on worker (Kafka Connect, Telegraf)", "",
            "Not measured here: this machine has no Kafka Connect distribution and no Telegraf binary. The "
            "figure is what a long-running worker needs if it spends the same CPU per record as this handler "
            "(JVM and Go consumers may spend less; they also pay for fetching, which the event source does for "
            "the function): vCPUs = rate × CPU per record ÷ utilisation.", "",
            "| payload | records/s | worker vCPUs | worker USD/hour | Lambda USD/hour at 1769 MB | Lambda ÷ worker |",
            "|---|---|---|---|---|---|"]
    for k in ks:
        for r in RATES:
            vm = k.worker_vcpus(r) * VM_VCPU_HOUR
            lam = k.usd_per_million(1769) * r * 3600 / 1e6
            out.append(f"| {k.name} | {_rate(r)} | {k.worker_vcpus(r):,} | {_usd(vm)} | {_usd(lam)} | "
                       f"{lam / vm:.1f} × |")
    ratios = {(k.name, r): k.usd_per_million(1769) * r * 3600 / 1e6 / (k.worker_vcpus(r) * VM_VCPU_HOUR)
              for k in ks for r in RATES}
    dearer = sorted(f"{name} at {_rate(r)} records/s" for (name, r), x in ratios.items() if x > 1)
    cheaper = sorted(f"{name} at {_rate(r)} records/s" for (name, r), x in ratios.items() if x <= 1)
    out += ["", f"Lambda costs more than a busy always-on worker for {', '.join(dearer) or 'none of these'}, and "
            f"less for {', '.join(cheaper) or 'none'} (where a worker's smallest size idles). The function also "
            "costs nothing while the topic is idle and needs no capacity planned for peaks."]
    return "\n".join(out) + "\n"
