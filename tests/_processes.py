"""Looking at processes through /proc: the descendants of a process, whether one is alive."""

import os


def parent_pid(pid):
    """The parent process id of ``pid``."""
    with open(f"/proc/{pid}/stat") as file:
        return int(file.read().rsplit(")", 1)[1].split()[1])


def descendants(pid):
    """Process ids of the children of ``pid``, their children, and so on."""
    children = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if parent_pid(int(entry)) == pid:
                children.append(int(entry))
        except (OSError, ValueError):
            continue
    return children + [d for c in children for d in descendants(c)]


def alive(pid):
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
