"""The machine a benchmark ran on, for the JSON reports of bench/*.sh (their Python
parts import it: PYTHONPATH=bench)."""
import os
import platform


def machine():
    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                   if l.startswith("model name"))
    except Exception:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}
