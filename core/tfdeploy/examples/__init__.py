"""Example models that train in seconds on data shipped inside installed packages."""
