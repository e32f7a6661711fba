"""The teacher kit: a student assignment from a chapter notebook, and a grader for what students hand in."""
