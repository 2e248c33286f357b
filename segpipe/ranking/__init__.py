"""What to label next: rank unlabeled images by the model's uncertainty, near-duplicates kept apart."""
