"""Shared test set-up. The model fixtures come from tfdeploy's own pytest plugin
(``tfdeploy.testing``), the same ones plugin authors use."""
