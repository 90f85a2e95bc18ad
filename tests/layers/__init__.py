"""Tests of keras_vit.layers, a module each (a package, so its test_attention.py is not tests/'s)."""
