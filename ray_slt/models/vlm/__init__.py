"""Small-VLM translators (RESEARCH.md section 1): SmolVLM2, Qwen2.5-VL and InternVL3 through transformers'
own classes, vision tower frozen, connector trained, LoRA on the language model.

- :mod:`~ray_slt.models.vlm.config`: ``VLMConfig`` (the ``vlm:`` section of a ``stage: vlm`` training config),
  the paper's per-family settings and Table 17 prompts;
- :mod:`~ray_slt.models.vlm.families`: what differs per family (frames, placeholders, tower/connector split);
- :mod:`~ray_slt.models.vlm.model`: ``VLMTranslator`` (``collate``, ``forward``, ``generate``,
  ``vision_features`` -> ``video_embeddings``: the hook the feature cache uses), ``build_vlm``,
  ``param_groups``, ``prepare_video``;
- :mod:`~ray_slt.models.vlm.data`: decoding manifest rows (the extraction stage's decoder) and the payload
  format; :mod:`~ray_slt.models.vlm.checkpoint`: ``save_vlm``/``load_vlm``; :mod:`~ray_slt.models.vlm.tiny`:
  tiny random models of the real classes.

The cache job is :mod:`ray_slt.models.vlm.cache`; training is the ``vlm`` task
(:mod:`ray_slt.training.tasks_vlm`) on the generic Ray Train loop; evaluation is ``ray-slt eval``.
"""
