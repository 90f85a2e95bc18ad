"""Tests for keras_vit.training.plan."""


def test_describe_length():
    from keras_vit.training.plan import describe_length

    assert describe_length(6) == describe_length(6, None, 24) == "6 epochs"
    assert describe_length(280, 340.0) == (
        "340 s of fit (first estimate 280 epochs, planned again from each epoch's time)"
    )
    assert describe_length(60, 70.0, 240) == (
        "70 s of fit (first estimate 60 epochs, at most 240, planned again from each epoch's time)"
    )
