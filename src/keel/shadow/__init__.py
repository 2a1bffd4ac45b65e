"""Shadow mode: mirror live traffic to a candidate, compare, promote on evidence."""
