"""`make bench`: the plumbing limit, recserve split and embedded, in-process stage costs, ratios."""
