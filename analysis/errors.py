"""What the data cannot give, as opposed to a caller's mistake.

AnalysisError: the numbers cannot be computed from these data (no blood pool, no remote myocardium, an
arterial input function with too few samples). Its message is one line a physicist can act on. It derives
from ValueError so that callers catching ValueError still catch it. A plain ValueError stays for a caller's
mistake (arrays of different shapes, an unknown method name). Voxels that fail are never raised: they are
counted in each result's failure mask.
"""


class AnalysisError(ValueError):
    """The data do not allow this computation; the message says why in one line."""
