"""``python -m devstack.synth``: synthesize the local stack's CDK app into the template cache
(build/cfn-moto) and print the assembly's path.

The local stack runs this in a child process so the CDK's node (jsii) process never lives
in the long-running stack process: it would take the terminal's Ctrl-C with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack.stack_settings import local_stack_settings


def synthesize_in_child(timeout_s: float = 300.0) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "devstack.synth"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        start_new_session=True,  # a Ctrl-C meant for the stack does not cut a synth in half
        env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "18,20"},
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError("the CDK synth failed: " + " | ".join(tail))
    return Path(done.stdout.strip().splitlines()[-1])


def main() -> int:
    from shared.dal.local import synthesized_assembly

    print(synthesized_assembly(local_stack_settings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
