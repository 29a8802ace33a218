"""The policy (a causal LM and its tokenizer) and how it is built or loaded: the layer below the sampler,
the data module and the LightningModule, which all use it and none of which it imports."""
