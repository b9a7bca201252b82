"""Categories: suggestions from the neighbours' vote, discovered clusters, and the decisions
merchandisers make about them (apply, accept, reject, rename)."""
