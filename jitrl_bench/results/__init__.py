"""What a run leaves for people to read: tables and curves, cost, the cost/quality frontier, the HTML report."""
