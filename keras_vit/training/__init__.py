"""Training a ViT with `model.fit`: the trainer step, augmentation, schedules, callbacks, recipes.

    trainer.py     ViTTrainer (augmentation, MixUp/CutMix, distillation in the step), make_trainer
    augment.py     the augmentation layers (build_augmentation)
    batches.py     TrainingBatches (one batch shape), even_batch_size
    optimizers.py  make_optimizer, the variables left out of weight decay, per-variable rates (ScaledAdamW, ...)
    distribute.py  data and model parallel on keras.distribution (JAX): distribution, vit_layout_map
    finetune.py    a pretrained start: load_pretrained, fine_tuning_start, layer-wise decay, frozen blocks
    schedules.py   warmup + cosine
    plan.py        a run's length (epochs or a time budget) and its learning-rate plan
    callbacks.py   epoch-end callbacks: timing, NaN guard, time limit/budget, checkpoints
    recipes.py     named flag sets, AUGMENT_RECIPES, the augmentation recipe and dtype policy of a run
    pipeline.py    the one fit -> score -> save sequence of `keras_vit.train` and `keras_vit.teacher`
    train_command.py  what `python -m keras_vit.train` runs once its flags are checked: processes, model, data, run

Import from the modules; this package imports nothing, so `keras_vit.training.recipes`
stays free of Keras.
"""
