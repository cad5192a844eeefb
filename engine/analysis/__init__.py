"""Looking inside: analyses over a model's public face (its config, weights and tokenizer, calling it,
and the activation capture of engine/capture.py), as TransformerLens keeps analyses above the model.

    backward.py   a NumPy backward pass, X_forward / X_backward per layer: input gradients
    saliency.py   input saliency (gradient, grad x input, integrated gradients, erasure), signed, contrastive
    lens.py       the logit lens and rankings
    factors.py    neuron factors: NMF of the MLP activations
    explain.py    all of them for one generation (or a given text, or several prompts), saved as one file
    report.py     explain results as one self-contained HTML page (assets/: its HTML, CSS, JS)
    plots.py      matplotlib figures of an Explanation
"""
