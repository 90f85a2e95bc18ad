"""Tests of keras_vit.convert, a module each."""
