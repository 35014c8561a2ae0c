"""The numbers Yosinski et al. 2014 (and Huh et al. 2016) published, as data, for side-by-side reports.

Sources: the paper (section 4.1 item 1, Table 1, section 4.3) and its supplementary
(Table S1). Accuracies and differences are fractions (0.016 = 1.6 percentage points).
"""
from __future__ import annotations

# Section 4.1, interpretation 1: baseB attains top-1 accuracy 0.625 (37.5% error).
BASE_B_TOP1 = 0.625
# Section 4.1, interpretation 1: the 1000-class network's top-1 error is 42.5%.
WHOLE_TOP1_ERROR = 0.425
WHOLE_TOP1 = round(1.0 - WHOLE_TOP1_ERROR, 6)

# Table 1: mean boost of AnB+ over baseB and over BnB+, pooled over the nets in a layer range.
TABLE1 = {
    "1-7": {"vs_base": 0.016, "vs_selffer_ft": 0.014},
    "3-7": {"vs_base": 0.018, "vs_selffer_ft": 0.014},
    "5-7": {"vs_base": 0.021, "vs_selffer_ft": 0.017},
}

# Section 4.3: frozen-transfer drop below the base at n=7 (positive = worse than base);
# the paper says "only 8% vs. 25%", read off Figure 3 (approximate).
DROP_N7 = {"random_split": 0.08, "natman": 0.25}

# Table S1: top-1 validation accuracy by images per class (reduced-data schedule).
TABLE_S1 = {
    1300: 0.55176, 1000: 0.54094, 750: 0.51470, 500: 0.47568, 250: 0.38428, 100: 0.00110,
    50: 0.00111, 25: 0.00107, 10: 0.00106, 5: 0.00108, 2: 0.00444, 1: 0.00379,
}


# Huh, Agrawal and Efros (2016), SUN-397 classification accuracy after fine-tuning (fractions).
# Table 1: pre-trained on the original 1000 classes, on the 127 top-down classes, and random init.
HUH_TABLE1_SUN = {"original": 0.522, "coarse": 0.487, "random": 0.357}
# Table 2, SUN column: a fixed image budget as fewer classes x 1000 images ("more examples/class")
# or 1000 classes x fewer images ("more classes").
HUH_TABLE2_SUN = {
    500_000: {"classes": 0.506, "images": 0.497},
    250_000: {"classes": 0.457, "images": 0.467},
    125_000: {"classes": 0.422, "images": 0.423},
}
# Section 5.1: pre-training on the 486 bottom-up classes changes SUN accuracy by -0.8 points.
HUH_CHANGE_486_SUN = -0.008
HUH_TARGET = "sun397"   # the target name under which the plan's SUN numbers are compared
