"""What ``train --resume DIR`` does with each option given again on its command line.

One table, one line per option. An option given with the value the run recorded is always fine; an
option left out keeps the recorded value. An option given with a *different* value is:

* ``ACCEPT``: well defined mid-run; the run continues with the new value, says so, and records the
  change in ``metrics.json`` (``resume_changes``).
* ``KEEP``: the run continues with the recorded value and says that the given one was ignored.
* ``REFUSE``: the value defines which run this is (its data split, batches or initial weights);
  changing it would silently mix two runs, so the command stops in one line and suggests a new run.
"""

from __future__ import annotations

from typing import Any

ACCEPT, KEEP, REFUSE = "accept", "keep", "refuse"

#: option (its ``dest``) -> (policy, reason shown to the user)
RESUME_POLICY: dict[str, tuple[str, str]] = {
    "epochs": (ACCEPT, "extends (or shortens) the run"),
    "lr": (ACCEPT, "Adam continues from its saved moments with the new learning rate"),
    "data_dir": (ACCEPT, "the same MNIST read from elsewhere (checksums verify it)"),
    "out": (ACCEPT, "the continued run is written to the new folder"),
    "device": (ACCEPT, "where torch runs does not change the run"),
    "impl": (REFUSE, "the saved optimizer and RNG states belong to one implementation"),
    "batch_size": (REFUSE, "it fixes the batches of every epoch, and where the interrupted one stopped"),
    "val_split": (REFUSE, "it fixes which images are trained on and which validate"),
    "train_limit": (REFUSE, "it fixes which images are trained on"),
    "dataset": (REFUSE, "it fixes the images trained on and the number of classes"),
    "seed": (REFUSE, "it fixes the split, the batch order and the initial weights"),
    "dtype": (REFUSE, "the saved weights and optimizer state are in the recorded precision"),
    "optimizer": (REFUSE, "the saved optimizer state belongs to the recorded optimizer"),
    "activation": (REFUSE, "the saved weights were trained for the recorded network"),
    "pool": (REFUSE, "the saved weights were trained for the recorded network"),
}


class ResumeConflict(Exception):
    """An option that cannot change on ``--resume``."""


def given_options(argv: list[str]) -> set[str]:
    """The ``dest`` of every long option written on the command line (``--batch-size 7`` -> ``batch_size``)."""
    return {token[2:].split("=", 1)[0].replace("-", "_") for token in argv if token.startswith("--")}


def apply_resume_policy(recorded: dict[str, Any], given: dict[str, Any], resume_dir: str,
                        ) -> tuple[dict[str, Any], list[str], dict[str, list[Any]]]:
    """``(config, messages, changes)``: the recorded config with the accepted changes applied, one line per
    change or ignored value to show the user, and ``{option: [old, new]}`` for ``metrics.json``.

    ``given`` holds only the options written on the command line. Raises :class:`ResumeConflict` for a
    refused change, and for an option the table does not know (add it to :data:`RESUME_POLICY`).
    """
    config, messages, changes = dict(recorded), [], {}
    for dest, value in given.items():
        if dest not in recorded or value == recorded[dest]:
            continue
        flag = "--" + dest.replace("_", "-")
        if dest not in RESUME_POLICY:
            raise ResumeConflict(f"{flag} cannot be changed on --resume (no resume policy for it)")
        policy, reason = RESUME_POLICY[dest]
        if policy == REFUSE:
            raise ResumeConflict(f"--resume: the run in {resume_dir} uses {flag} {recorded[dest]}, not {value} "
                                 f"({reason}); start a new run with --out instead")
        if policy == KEEP:
            messages.append(f"{flag} {value} ignored: the run continues with {recorded[dest]} ({reason})")
            continue
        config[dest] = value
        changes[dest] = [recorded[dest], value]
        messages.append(f"{flag} changed from {recorded[dest]} to {value} ({reason})")
    return config, messages, changes
