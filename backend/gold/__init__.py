"""Gold questions: examples of known σ mixed into annotators' tasks, and what their answers say."""
