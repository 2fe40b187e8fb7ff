// Train: losses, AdamW schedules, the trainer and the distillation recipes land here with the
// fine-tuning and distillation issues. Until then this module only re-exports Models.
@_exported import Models
