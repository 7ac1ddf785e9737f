"""The original T2M evaluator (Guo et al., CVPR 2022: "Generating Diverse and Natural 3D Human Motions from
Text"), loaded from a user's local copy of its files, so that figures compare with published tables.

Files (from the T2M release; nothing is downloaded):
  DIR/text_mot_match/model/finest.tar   the evaluator's weights (movement, motion and text encoders)
  DIR/meta/mean.npy, DIR/meta/std.npy   HumanML3D feature statistics the evaluator was trained with
  GLOVE/our_vab_data.npy, our_vab_words.pkl, our_vab_idx.pkl   the GloVe word vectors it reads captions with
The .pkl files are Python pickles: load only files you trust.

Its text encoder reads (word, part-of-speech) tokens, as HumanML3D's captions carry them ("walk/VERB"); motion
enters as HumanML3D 263-d features without the 4 foot contacts, in windows of 4 frames. Layer names follow the
release so that its state dicts load unchanged; sizes are read from the checkpoint.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

POS = ("VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV", "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP",
       "Desc_VIP", "OTHER")
# Words the T2M word vectorizer tags with a category of its own instead of their part of speech.
VIP_WORDS = {
    "Loc_VIP": ("left right clockwise counterclockwise anticlockwise forward back backward up down straight "
                "curve").split(),
    "Body_VIP": "arm chin foot feet face hand mouth leg waist eye knee shoulder thigh".split(),
    "Obj_VIP": "stair dumbbell chair window floor car ball handrail baseball basketball".split(),
    "Act_VIP": ("walk run swing pick bring kick put squat throw hop dance jump turn stumble dance stop sit lift lower "
                "raise wash stand kneel stroll rub bend balance flap jog shuffle lean rotate spin spread "
                "climb").split(),
    "Desc_VIP": "slowly carefully fast careful slow quickly happy angry sad happily angrily sadly".split(),
}
MAX_WORDS = 20
UNIT = 4  # frames per motion token


class MovementConvEncoder(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.main = nn.Sequential(nn.Conv1d(input_size, hidden_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
                                  nn.Conv1d(hidden_size, output_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2))
        self.out_net = nn.Linear(output_size, output_size)

    def forward(self, x):  # [B, T, C] -> [B, T / 4, out]
        return self.out_net(self.main(x.transpose(1, 2)).transpose(1, 2))


class _BiGRUCo(nn.Module):
    """Input projection, a bidirectional GRU from a learned initial state, and an MLP on both final states."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size),
                                        nn.LeakyReLU(0.2), nn.Linear(hidden_size, output_size))
        self.hidden = nn.Parameter(torch.zeros(2, 1, hidden_size))

    def encode(self, x, lengths):
        packed = pack_padded_sequence(self.input_emb(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed, self.hidden.repeat(1, x.shape[0], 1).contiguous())
        return self.output_net(torch.cat([last[0], last[1]], -1))


class MotionEncoderBiGRUCo(_BiGRUCo):
    def forward(self, x, lengths):
        return self.encode(x, lengths)


class TextEncoderBiGRUCo(_BiGRUCo):
    def __init__(self, word_size: int, pos_size: int, hidden_size: int, output_size: int):
        super().__init__(word_size, hidden_size, output_size)
        self.pos_emb = nn.Linear(pos_size, word_size)

    def forward(self, words, pos, lengths):
        return self.encode(words + self.pos_emb(pos), lengths)


class WordVectorizer:
    """GloVe vector and part-of-speech one-hot of each "word/POS" token, as the T2M evaluator reads them."""

    def __init__(self, folder, prefix: str = "our_vab"):
        folder = Path(folder)
        paths = [folder / f"{prefix}_{s}" for s in ("data.npy", "words.pkl", "idx.pkl")]
        for p in paths:
            if not p.exists():
                raise FileNotFoundError(f"{p}: missing (the T2M release's GloVe files: {prefix}_data.npy, "
                                        f"{prefix}_words.pkl, {prefix}_idx.pkl)")
        vectors = np.load(paths[0])
        with open(paths[1], "rb") as f:
            words = pickle.load(f)
        with open(paths[2], "rb") as f:
            index = pickle.load(f)
        self.vectors = {w: vectors[index[w]] for w in words}
        if "unk" not in self.vectors:
            raise ValueError(f"{folder}: the vocabulary has no 'unk' entry")
        self.vip = {w: cat for cat, ws in VIP_WORDS.items() for w in ws}

    def __call__(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        word, _, pos = token.partition("/")
        onehot = np.zeros(len(POS), dtype=np.float32)
        if word in self.vectors:
            onehot[POS.index(self.vip.get(word, pos if pos in POS else "OTHER"))] = 1
            return self.vectors[word].astype(np.float32), onehot
        onehot[POS.index("OTHER")] = 1
        return self.vectors["unk"].astype(np.float32), onehot

    def sentence(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
        """The evaluator's input for one caption: sos + up to 20 tokens + eos, padded with unk to 22."""
        tokens = ["sos/OTHER"] + list(tokens[:MAX_WORDS]) + ["eos/OTHER"]
        length = len(tokens)
        tokens += ["unk/OTHER"] * (MAX_WORDS + 2 - length)
        words, pos = zip(*(self(t) for t in tokens))
        return np.stack(words), np.stack(pos), length


class OriginalT2MEvaluator(nn.Module):
    """Same interface as `TextMotionEvaluator` (embed_motion, embed_text) around the T2M release's weights.
    `embed_text` needs each caption's "word/POS" tokens: pass `tokens` (HumanML3D's texts carry them)."""

    def __init__(self, folder, glove):
        super().__init__()
        folder = Path(folder)
        ckpt = folder / "text_mot_match" / "model" / "finest.tar"
        if not ckpt.exists():
            raise FileNotFoundError(f"{ckpt}: missing (the T2M release's evaluator weights)")
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        missing = [k for k in ("movement_encoder", "motion_encoder", "text_encoder") if k not in state]
        if missing:
            raise ValueError(f"{ckpt}: not a T2M evaluator checkpoint (no {', '.join(missing)})")
        mv, mo, tx = state["movement_encoder"], state["motion_encoder"], state["text_encoder"]
        self.movement = MovementConvEncoder(mv["main.0.weight"].shape[1], mv["main.0.weight"].shape[0],
                                            mv["out_net.weight"].shape[0])
        self.motion = MotionEncoderBiGRUCo(mo["input_emb.weight"].shape[1], mo["input_emb.weight"].shape[0],
                                           mo["output_net.3.weight"].shape[0])
        self.text = TextEncoderBiGRUCo(tx["pos_emb.weight"].shape[0], tx["pos_emb.weight"].shape[1],
                                       tx["input_emb.weight"].shape[0], tx["output_net.3.weight"].shape[0])
        self.movement.load_state_dict(mv)
        self.motion.load_state_dict(mo)
        self.text.load_state_dict(tx)
        for name in ("mean", "std"):
            path = folder / "meta" / f"{name}.npy"
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing (the feature statistics the evaluator was trained with)")
            self.register_buffer(name, torch.from_numpy(np.load(path)).float())
        self.words = WordVectorizer(glove)
        self.eval()

    def embed_motion(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = ((features - self.mean) / self.std)[..., :-4]  # without the foot contacts
        lengths = (mask.sum(1) // UNIT).clamp_min(1)
        return self.motion(self.movement(x * mask[..., None]), lengths)

    def embed_text(self, texts: list[str], tokens: list[list[str]] | None = None) -> torch.Tensor:
        if tokens is None:
            raise ValueError("the original T2M evaluator reads captions as 'word/POS' tokens: give `tokens`")
        words, pos, lengths = zip(*(self.words.sentence(t) for t in tokens))
        device = self.mean.device
        return self.text(torch.from_numpy(np.stack(words)).to(device), torch.from_numpy(np.stack(pos)).to(device),
                         torch.tensor(lengths))
