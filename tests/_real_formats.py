"""Small fixtures written in the real on-disk formats, at test time, offline.

- an image folder: PNG and JPEG files written by Pillow, one sub-folder per class, each class
  a distinct colour (so a model's features can separate them);
- a CSV and a JSON Lines file of labelled sentences;
- a ``datasets.save_to_disk`` directory;
- a tiny Hugging Face BERT (``save_pretrained`` from a config) with a ``BertTokenizerFast`` built
  from a vocabulary file written here — nothing is downloaded.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

COLORS = [(220, 40, 40), (40, 200, 60), (40, 60, 220)]
WORDS_POS = ["good", "great", "fine"]
WORDS_NEG = ["bad", "awful", "poor"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS_POS, *WORDS_NEG,
         "the", "movie", "film", "was", "is"]  # fmt: skip


def image_folder(root: Path, per_class: int = 10, size: tuple[int, int] = (24, 20)) -> Path:
    """``root/class{c}/{i}.png|jpg``: noisy images of one colour per class; odd i PNG, even JPEG."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, color in enumerate(COLORS):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-30, 30, (size[1], size[0], 3))
            arr = np.clip(np.array(color)[None, None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def sentences(n: int = 40, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        pos = i % 2 == 1
        w = rng.choice(WORDS_POS if pos else WORDS_NEG, 2)
        rows.append({"text": f"the movie was {w[0]} {w[1]}", "label": "pos" if pos else "neg"})
    return rows


def text_csv(path: Path, n: int = 40) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(sentences(n))
    return path


def text_jsonl(path: Path, n: int = 40) -> Path:
    """Other column names than the defaults, integer labels: ``sentence`` and ``y``."""
    with path.open("w", encoding="utf-8") as f:
        for r in sentences(n):
            f.write(json.dumps({"sentence": r["text"], "y": int(r["label"] == "pos")}) + "\n")
    return path


def hf_text_dataset(path: Path, n: int = 40) -> Path:
    import datasets

    rows = sentences(n)
    ds = datasets.Dataset.from_dict(
        {"text": [r["text"] for r in rows], "label": [int(r["label"] == "pos") for r in rows]}
    )
    ds.save_to_disk(str(path))
    return path


def hf_numeric_dataset(path: Path, n: int = 30, dim: int = 5) -> Path:
    """A DatasetDict with train and test splits of numeric vectors (column ``x``) and labels."""
    import datasets

    rng = np.random.default_rng(1)

    def part(m: int) -> datasets.Dataset:
        y = np.arange(m) % 3
        x = rng.normal(size=(m, dim)) + 3 * np.eye(dim)[y]
        return datasets.Dataset.from_dict({"x": x.astype(np.float32).tolist(), "label": y.tolist()})

    datasets.DatasetDict({"train": part(n), "test": part(n // 2)}).save_to_disk(str(path))
    return path


def tokenizer(directory: Path) -> Path:
    """A BERT-style WordPiece tokenizer over :data:`VOCAB`, built with ``tokenizers`` (the same
    on transformers 4 and 5) and saved with ``save_pretrained``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(VOCAB)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")  # fmt: skip
    fast.save_pretrained(directory)
    return directory


def tiny_bert(directory: Path, num_labels: int = 2) -> Path:
    """A 2-layer BERT for sequence classification and its tokenizer, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer(directory)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                        num_labels=num_labels)  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory


def tiny_vit(directory: Path, image_size: int = 16, num_labels: int = 3) -> Path:
    """A 1-block ViT image classifier and its image processor (size, mean, std), saved with
    save_pretrained: the preprocessing an image model declares."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    directory.mkdir(parents=True, exist_ok=True)
    config = ViTConfig(image_size=image_size, patch_size=8, hidden_size=16, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=32, num_labels=num_labels)  # fmt: skip
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(directory)
    ViTImageProcessor(size={"height": image_size, "width": image_size}, image_mean=[0.5, 0.4, 0.3],
                      image_std=[0.2, 0.25, 0.3]).save_pretrained(directory)  # fmt: skip
    return directory
