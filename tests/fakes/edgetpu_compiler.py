"""Fake of Coral's ``edgetpu_compiler`` command line (run through a wrapper script on PATH).

Takes the real flags (-s/--show_operations, -o/--out_dir, -v/--version), refuses a model whose
input is not 8-bit like the real compiler, writes ``<stem>_edgetpu.tflite`` (a copy: the fake
delegate runs it on the CPU) and ``<stem>_edgetpu.log``, and prints the real output format.
FAKE_EDGETPU_CPU_OPS (default 1) ops are reported as left on the CPU.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

VERSION = "16.0.384591198"


def main() -> int:
    parser = argparse.ArgumentParser(prog="edgetpu_compiler")
    parser.add_argument("-s", "--show_operations", action="store_true")
    parser.add_argument("-o", "--out_dir", default=".")
    parser.add_argument("-v", "--version", action="store_true")
    parser.add_argument("models", nargs="*")
    args = parser.parse_args()
    print(f"Edge TPU Compiler version {VERSION}")
    if args.version:
        return 0
    if len(args.models) != 1:
        print("ERROR: missing model file", file=sys.stderr)
        return 1
    model = Path(args.models[0])
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(model))
        details = interpreter.get_input_details()[0]
        ops = interpreter._get_ops_details()
    except Exception:
        print(f"Invalid model: {model}")
        print("Model not found or invalid. Internal compiler error. Aborting!")
        return 1
    if details["dtype"].__name__ not in ("uint8", "int8"):
        print(f"Invalid model: {model}")
        print("Model not quantized")
        return 1
    counts: dict[str, int] = {}
    for op in ops:
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    cpu_ops = min(int(os.environ.get("FAKE_EDGETPU_CPU_OPS", "1")), len(ops))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    compiled = out / f"{model.stem}_edgetpu.tflite"
    log_file = out / f"{model.stem}_edgetpu.log"
    shutil.copyfile(model, compiled)
    # The last op(s) (e.g. SOFTMAX on an int8 tail) are the usual ones left on the CPU.
    table = []
    tail = ops[len(ops) - cpu_ops :] if cpu_ops else []
    tail_counts: dict[str, int] = {}
    for op in tail:
        tail_counts[op["op_name"]] = tail_counts.get(op["op_name"], 0) + 1
    for name, count in counts.items():
        on_cpu = tail_counts.get(name, 0)
        if count - on_cpu:
            table.append(f"{name:<30} {count - on_cpu:<10} Mapped to Edge TPU")
        if on_cpu:
            table.append(f"{name:<30} {on_cpu:<10} More than one subgraph is not supported")
    log_file.write_text(
        f"Edge TPU Compiler version {VERSION}\nInput: {model}\nOutput: {compiled}\n\n"
        f"Operator                       Count      Status\n\n" + "\n".join(table) + "\n"
    )
    size = model.stat().st_size / 1024
    print("Started a compilation timeout timer of 180 seconds.\n")
    print("Model compiled successfully in 412 ms.\n")
    print(f"Input model: {model}\nInput size: {size:.2f}KiB\nOutput model: {compiled}\nOutput size: {size:.2f}KiB")
    print("On-chip memory used for caching model parameters: 412.25KiB")
    print("On-chip memory remaining for caching model parameters: 7.13MiB")
    print("Off-chip memory used for streaming uncached model parameters: 0.00B")
    print("Number of Edge TPU subgraphs: 1")
    print(f"Total number of operations: {len(ops)}")
    print(f"Operation log: {log_file}\n")
    if cpu_ops:
        print(
            "Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of "
            "the model will instead run on the CPU, which is slower. If possible, consider updating your model "
            "to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs."
        )
        print(f"Number of operations that will run on Edge TPU: {len(ops) - cpu_ops}")
        print(f"Number of operations that will run on CPU: {cpu_ops}\n")
    if args.show_operations:
        print("Operator                       Count      Status\n")
        print("\n".join(table) + "\n")
    print("Compilation child process completed within timeout period.")
    print("Compilation succeeded! ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
