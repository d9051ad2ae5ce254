"""Model layer: timm backbones, the head/body/tail split and VPT prompts."""
