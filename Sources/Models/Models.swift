// Models: the encoder family (BERT, MPNet), LoRA, tokenizers and checkpoint IO land here with
// the fine-tuning issue. Until then this module only re-exports the backend it builds on.
@_exported import Backend
