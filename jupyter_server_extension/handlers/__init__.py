"""HTTP handlers of the ExecPlanner server extension."""
