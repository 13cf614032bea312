"""Statistics over scores: agreement with human ratings, identity AUC, bootstrap intervals.

numpy (with krippendorff and scikit-learn as oracles); no torch, no pytest.
"""
