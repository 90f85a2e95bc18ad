"""Tests of keras_vit.models, a module each."""
