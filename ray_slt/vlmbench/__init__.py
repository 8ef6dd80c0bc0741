"""VLM sign-understanding benchmarks (papers 3 and 4 of RESEARCH.md; ``../shared/research/SPEC_papers_3_5.md``).

- :mod:`~ray_slt.vlmbench.wlasl`: zero-shot VLM recognition on WLASL300 (open set at three prompt levels, binary
  matching against a lexicon's descriptions);
- :mod:`~ray_slt.vlmbench.lexsign`: the LexSign-Bench builder (versioned, seeded, content-hashed question files);
- :mod:`~ray_slt.vlmbench.runner`: any VLM of the project or any OpenAI-compatible endpoint answering them on
  Ray Data, resumable, with the blind and temporal-perturbation controls;
- :mod:`~ray_slt.vlmbench.scoring`: exact / synonym / lenient matching, YES/NO and letter parsing, accuracies
  with bootstrap confidence intervals.

Nothing here trains; the package depends on data, features and models, and nothing but the CLI depends on it.
"""
