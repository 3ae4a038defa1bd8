"""auto (placeholder: full guess lands next)."""


def guess_task(graph, labels):
    return "generic", "auto: no task guessed yet; judged generically"
