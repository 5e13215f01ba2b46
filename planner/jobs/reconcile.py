"""Unconfirmed journal entries (written before sbatch, ids never recorded) matched with Slurm again.

``submit`` writes each submission to journal.json before sbatch and confirms it with the job
ids right after. When the second write never happens (a full disk, a crash, kill -9), the
next ``submit`` or ``status`` asks Slurm for the jobs by the submission's unique job name:
found, the ids are recorded; not found anywhere, sbatch never got the job and the units
may be submitted again; Slurm not answering, the units stay held back, never duplicated.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.folder.journal import Journal
from planner.spec.errors import SchedulerError

Finder = Callable[[str], list[str]]


def reconcile(journal: Journal, find: Finder) -> tuple[bool, list[str]]:
    """Resolve every intent of ``journal`` in place.

    Args:
        journal: The journal as read; changed in place.
        find: job name -> ids of the jobs with that name (raises SchedulerError when Slurm cannot
            tell): ``slurm_query.job_ids_by_name``, or a fake in tests.

    Returns:
        Whether the journal changed (write it back), and one note per intent still unresolved or dropped.
    """
    changed = False
    notes: list[str] = []
    for sub in journal.intents():
        name = str(sub.parameters.get("name") or "")
        if sub.executor != "slurm" or not name:
            # Local processes cannot be found again by name; their units are shown as lost.
            notes.append(f"submission {sub.number} ({sub.executor}) was never confirmed; its units can be submitted again")
            journal.drop(sub)
            changed = True
            continue
        try:
            ids = find(name)
        except SchedulerError as exc:
            notes.append(f"submission {sub.number} ({name}) is unconfirmed and Slurm cannot say whether it got it "
                         f"({str(exc).splitlines()[0]}); its units are held back until Slurm answers")
            continue
        if ids:
            sub.confirm_array(ids[0])
            if len(ids) > 1:
                notes.append(f"submission {sub.number} ({name}): several jobs carry its name ({', '.join(ids)}); recorded {ids[0]}")
        else:
            notes.append(f"submission {sub.number} ({name}) never reached Slurm; its units can be submitted again")
            journal.drop(sub)
        changed = True
    return changed, notes
