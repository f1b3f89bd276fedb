"""Pictures of what BESTIE trains on and what it predicts (the drawing primitives: :mod:`bestie_d2.utils.vis`).

* :mod:`.training_sample`: one mapper training sample -> six titled target panels;
  :func:`~.training_sample.visualize_dataset` writes one PNG per chosen record
  (the ``bestie-visualize`` tool, :mod:`bestie_d2.tools.visualize`);
* :mod:`.pseudo_labels`: the pseudo instances of semantic knowledge transfer at the original
  resolution of a record, and their panel;
* :mod:`.demo_grid`: the demo PNG (pseudo labels / ground truth vs. the model's maps and instances);
* :mod:`.names`: class names of a data set and image-label captions.
"""
