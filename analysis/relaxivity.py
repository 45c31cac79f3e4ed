"""Longitudinal relaxivity r1 of gadolinium agents in blood plasma at 37 C (L/mmol/s).

Values: Rohrer et al., Invest Radiol 2005;40:715-724 (Table 2, plasma, 1.5 T and 3 T).
Agents are matched on Contrast/Bolus Agent text by brand or generic name;
a site overrides or adds entries in configuration.
"""
from __future__ import annotations

import re

from analysis.errors import AnalysisError


# generic name: (regex on the agent text, r1 at 1.5 T, r1 at 3 T)
R1_PLASMA = {
    "gadobutrol": (r"gadobutrol|gadovist|gadavist", 5.2, 5.0),
    "gadoterate": (r"gadoter|dotarem|clariscan", 3.6, 3.5),
    "gadopentetate": (r"gadopentet|magnevist|gd-?dtpa", 4.1, 3.7),
    "gadobenate": (r"gadobenat|multihance", 6.3, 5.5),
    "gadoteridol": (r"gadoteridol|prohance", 4.1, 3.7),
    "gadodiamide": (r"gadodiamid|omniscan", 4.3, 4.0),
    "gadoxetate": (r"gadoxet|eovist|primovist", 6.9, 6.2),
}


class UnknownAgent(AnalysisError):
    pass


def r1_per_mM_s(agent_text: str, field_strength_t: float, overrides: dict[str, float] | None = None) -> float:
    """r1 (L/mmol/s) for the agent named in agent_text at field_strength_t (T), linear between 1.5 and 3 T."""
    text = (agent_text or "").lower()
    for name, value in (overrides or {}).items():
        if name.lower() in text:
            return float(value)
    for name, (pattern, r15, r30) in R1_PLASMA.items():
        if re.search(pattern, text):
            weight = min(max((field_strength_t - 1.5) / 1.5, 0.0), 1.0)
            return r15 + weight * (r30 - r15)
    raise UnknownAgent(f"no relaxivity known for contrast agent {agent_text!r}; add it under [inputs] relaxivity")
