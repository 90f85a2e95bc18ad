"""Tests of keras_vit.layers, a module each (a package, so its test files' names may repeat tests/'s)."""
