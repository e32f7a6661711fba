"""`diplom`: the experiment batch, the stack on its own, and the benchmarks.

diplom run [BATCH.yaml] [--quick]  # papermill batch -> results/<batch>/ (report.html, results.csv, figures)
diplom report results/<batch>      # rebuild the report from the run documents alone
diplom check results/<batch>       # every claim's verdict; exit 1 if any is contradicted
diplom assignment NOTEBOOK [-o DIR]  # a chapter's student version (answers to write, code locked; nbgrader cells)
diplom grade ASSIGNMENT SUBMISSION...  # points per part: executed, locked cells, verdicts recomputed, answers
diplom up --queue memory|nats|kafka  # the broker (if chosen) + processor + ingest + gateway, Ctrl-C stops all
          [--nats-nodes 1|3]       # one nats-server or a three-node JetStream cluster (R3 stream)
          [--kafka-nodes 1|3]      # one KRaft broker or three (topic RF 3, min ISR 2)
                                   # HARNESS_NATS=external NATS_URL=...: the user's NATS, started by nobody here
diplom switch --to memory|nats|kafka  # switch a running `diplom up` to another queue (planned; --naive: recreate)
diplom bench-backends [--quick]    # backend throughput vs raw asyncio.Queue / nats-py
diplom bench-services [--quick]    # the HTTP chain vs a bare 3-hop chain
diplom bench-stamps                # CPU the stage stamps add per message, with vs without
diplom bench-tail                  # client p99 at half rate: current stack vs a lever (GC, granian), side by side
diplom bench-cluster [--repeat N]  # one publisher: R3 on three nodes vs R1 on one, interleaved rounds
diplom soak --minutes N            # half the max rate on memory and NATS; RSS, fds, ledger size; fails on growth
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from experiments.runtime.nats.cluster import NatsCluster
from experiments.runtime.nats.external import ExternalNats
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.nats.provider import NatsServer


def up(args: argparse.Namespace) -> int:
    from experiments.runtime import switch_control
    from experiments.runtime.stack import Stack, StackConfig
    from services.settings import BackendSettings, GatewaySettings, load

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    nats: NatsServer | None = None
    if args.queue == "nats" and os.environ.get("HARNESS_NATS", "").strip().lower() == "external":
        nats = ExternalNats.from_env(os.environ)
    elif args.queue == "nats" and args.nats_nodes > 1:
        nats = NatsCluster(
            workdir / "nats",
            nodes=args.nats_nodes,
            ports=[args.nats_port + i for i in range(args.nats_nodes)],
            monitor_ports=[args.nats_monitor_port + i for i in range(args.nats_nodes)],
        )
    elif args.queue == "nats":
        nats = ProcessNats(workdir / "nats", port=args.nats_port, monitor_port=args.nats_monitor_port)
    from experiments.runtime.kafka.provider import kafka_server_from_env

    kafka = kafka_server_from_env(workdir / "kafka", nodes=args.kafka_nodes) if args.queue == "kafka" else None
    cfg = StackConfig(
        queue=args.queue,
        workers=args.workers,
        gateway_port=args.gateway_port,
        ingest_port=args.ingest_port,
        processor_ports=[args.processor_port],
        backend=load(BackendSettings, queue_size=args.queue_size) if args.queue_size else None,
        gateway=load(GatewaySettings, api_key=args.api_key) if args.api_key else None,
    )
    stack = Stack(cfg, workdir, nats=nats, kafka=kafka)
    # the queue's broker runs; the other is started when `diplom switch --to` it asks for one
    brokers = {
        "nats": switch_control.StandbyBroker(
            nats or ProcessNats(workdir / "nats", port=args.nats_port, monitor_port=args.nats_monitor_port)
        ),
        "kafka": switch_control.StandbyBroker(
            kafka or kafka_server_from_env(workdir / "kafka", nodes=args.kafka_nodes)
        ),
    }
    stopping = threading.Event()
    switch_asked = threading.Event()
    wake = threading.Event()

    def on_signal(event: threading.Event) -> None:
        event.set()
        wake.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: on_signal(stopping))
    signal.signal(switch_control.SWITCH_SIGNAL, lambda *_: on_signal(switch_asked))
    try:
        if args.queue in brokers:
            brokers[args.queue].ensure()
        stack.start()
        switch_control.write_state(workdir, stack, brokers)
        print(f"queue: {args.queue} (workdir {workdir}, logs and ledger there)")
        if nats is not None:
            print(f"nats:      {nats.url}   monitoring {nats.monitor_url}")
            print(f"           {nats.kind}, {getattr(nats, 'size', 1)} node(s); stream replicas "
                  f"{stack.backend_settings.nats_replicas}")  # fmt: skip
        if kafka is not None:
            b = stack.backend_settings
            print(f"kafka:     {kafka.bootstrap_servers}   {kafka.kind}, {kafka.size} broker(s); "
                  f"topic {b.kafka_topic}, replicas {b.kafka_replicas}")  # fmt: skip
        print(f"gateway:   {stack.gateway_url}   POST /api/v1/ingest, GET /api/v1/status, /docs")
        print(f"ingest:    {stack.ingest.url}")
        print(f"processor: {stack.processor_url}   GET /stats")
        print("Ctrl-C stops everything; `diplom switch --to memory|nats|kafka` switches the queue.", flush=True)
        while not stopping.is_set():
            wake.wait()
            wake.clear()
            if switch_asked.is_set() and not stopping.is_set():
                switch_asked.clear()
                print(f"switch: {switch_control.serve_request(workdir, stack, brokers)}", flush=True)
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        switch_control.stop_all(brokers)
        (workdir / switch_control.STATE).unlink(missing_ok=True)
    return 0


def switch(args: argparse.Namespace) -> int:
    from experiments.runtime import switch_control

    result = switch_control.request_switch(Path(args.workdir).resolve(), args.to, args.naive, args.timeout)
    for line in result.get("reports", []):
        print(line)
    if not result.get("ok"):
        print(f"switch failed: {result.get('error')}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="diplom", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_up = sub.add_parser("up", help="start the stack on 127.0.0.1 until Ctrl-C")
    p_up.add_argument("--queue", choices=["memory", "nats", "kafka"], default="memory")
    p_up.add_argument("--workers", type=int, default=4)
    p_up.add_argument("--queue-size", type=int, default=0, help="memory queue capacity (default: QUEUE_SIZE or 1000)")
    p_up.add_argument("--api-key", default="", help="require this key at the gateway")
    p_up.add_argument("--gateway-port", type=int, default=8080)
    p_up.add_argument("--ingest-port", type=int, default=8081)
    p_up.add_argument("--processor-port", type=int, default=8082)
    p_up.add_argument("--nats-port", type=int, default=4222, help="client port (node i of a cluster: +i)")
    p_up.add_argument("--nats-monitor-port", type=int, default=8222, help="monitoring port (node i: +i)")
    p_up.add_argument(
        "--nats-nodes",
        type=int,
        choices=[1, 3],
        default=int(os.environ.get("HARNESS_NATS_NODES", "1") or 1),
        help="nats-servers: 1, or a three-node JetStream cluster with an R3 stream (default: HARNESS_NATS_NODES or 1)",
    )
    p_up.add_argument(
        "--kafka-nodes",
        type=int,
        choices=[1, 3],
        default=int(os.environ.get("HARNESS_KAFKA_NODES", "1") or 1),
        help="Kafka brokers: 1, or three with the topic on all three (default: HARNESS_KAFKA_NODES or 1)",
    )
    p_up.add_argument("--workdir", default="run", help="where logs, the ledger and the NATS store go")

    p_switch = sub.add_parser("switch", help="switch a running `diplom up` to another queue, under load")
    p_switch.add_argument("--to", choices=["memory", "nats", "kafka"], required=True)
    p_switch.add_argument(
        "--naive", action="store_true", help="stop the processor and start it on the new queue (loses a memory backlog)"
    )
    p_switch.add_argument("--workdir", default="run", help="the workdir of the running `diplom up`")
    p_switch.add_argument("--timeout", type=float, default=180.0, help="s to wait for the switch")

    sub.add_parser("run", help="run an experiment batch (see `diplom run -h`)", add_help=False)
    sub.add_parser("report", help="rebuild a batch's report from its run documents", add_help=False)
    sub.add_parser("check", help="every claim's verdict on a batch; exit 1 if any is contradicted", add_help=False)
    sub.add_parser("assignment", help="a chapter notebook's student version (nbgrader cells)", add_help=False)
    sub.add_parser("grade", help="grade students' executed chapter notebooks, offline", add_help=False)
    sub.add_parser("bench-backends", help="backend throughput vs the raw libraries", add_help=False)
    sub.add_parser("bench-services", help="the HTTP chain vs a bare chain", add_help=False)
    sub.add_parser("bench-stamps", help="CPU the stage stamps add per message", add_help=False)
    sub.add_parser("bench-tail", help="client p99 at half rate: current stack vs a lever, side by side", add_help=False)
    sub.add_parser("bench-cluster", help="R3 on a three-node cluster vs R1 on one node", add_help=False)
    sub.add_parser("soak", help="minutes at half the max rate: RSS and fd slopes per process", add_help=False)

    args, rest = parser.parse_known_args(argv)
    if args.command == "run":
        from experiments.batch import runner as batch
        from experiments.lab import registry

        return batch.main(rest, check=registry.check_parameters)
    if args.command == "report":
        from experiments.batch import runner as batch

        return batch.report_main(rest)
    if args.command == "check":
        from experiments.results import verdicts

        return verdicts.check_main(rest)
    if args.command == "assignment":
        from experiments.teach import assignment

        return assignment.main(rest)
    if args.command == "grade":
        from experiments.teach import grade

        return grade.main(rest)
    if args.command == "bench-backends":
        from experiments.bench import backends as bench_backends

        return bench_backends.main(rest)
    if args.command == "bench-cluster":
        from experiments.bench import replica_cost as bench_cluster

        return bench_cluster.main(rest)
    if args.command == "bench-services":
        from experiments.bench import http_chain as bench_services

        return bench_services.main(rest)
    if args.command == "bench-tail":
        from experiments.bench import tail as bench_tail

        return bench_tail.main(rest)
    if args.command == "soak":
        from experiments.bench import soak

        return soak.main(rest)
    if args.command == "bench-stamps":
        from experiments.bench import stamp_cost

        return stamp_cost.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "switch":
        return switch(args)
    return up(args)


if __name__ == "__main__":
    sys.exit(main())
