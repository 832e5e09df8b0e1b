"""External recommender libraries run on recserve's own splits (own venv: make eval-external)."""
