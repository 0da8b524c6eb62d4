"""The LightningModule: teacher-forced cross-entropy, AdamW, LR schedule, validation
by greedy decoding (sentence accuracy is the metric checkpoints are chosen on).

A bidirectional model (``model.bidirectional``, BTTR) is trained on the mean of two
losses from one encoder pass: left to right on the caption, right to left on the
caption reversed (:func:`texlens.models.decoder.reverse_sequences`)."""

from __future__ import annotations

import os

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Timer

from texlens import metrics
from texlens.checkpoint import TRAIN_FORMULAS, meta
from texlens.config import Config
from texlens.decoding import greedy_decode, trim_runaway
from texlens.models.decoder import L2R, R2L, reverse_sequences
from texlens.models.satrn import build_model
from texlens.tokens import Vocab
from texlens.train.schedules import build_scheduler, teacher_forcing_ratio


def sequence_loss(logits: torch.Tensor, target: torch.Tensor, ignore_pad: bool = True,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over (B, T, V) logits. With ``ignore_pad`` the padding after <eos>
    carries no loss; without it the model is also trained to emit <pad> there, which
    the experiment log compares against."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                           ignore_index=Vocab.pad_id if ignore_pad else -100,
                           label_smoothing=label_smoothing)


class Recognizer(L.LightningModule):
    def __init__(self, cfg: Config, vocab: Vocab):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.model = build_model(cfg.model, len(vocab))
        self._preds: list[list[str]] = []
        self._refs: list[list[str]] = []
        # Truths of validation samples the loader cannot give (unreadable image, token
        # outside the vocabulary, too long), set by train.run: they count as wrong with an
        # empty prediction, so validation has evaluate's denominator.
        self.val_unloadable: list[list[str]] = []
        # The packed training formulas (its ancestors' included; None when unknown), set by
        # train.run and stored in every checkpoint, so that `texlens evaluate --held-out`
        # works on a run's checkpoints and not only on its exported model.
        self.train_formulas: bytes | None = None
        # Debugging aid for distributed runs: with TEXLENS_DEBUG_SEEN=PATH each process
        # appends "epoch<TAB>index index ..." (training-set indices, one line a batch) to
        # PATH.rank<R>, so one can check that the ranks trained on different samples.
        self._seen_path = os.environ.get("TEXLENS_DEBUG_SEEN")

    def decoder_inputs(self, memory: torch.Tensor, mem_mask: torch.Tensor | None,
                       ids: torch.Tensor, ratio: float, direction: int = L2R) -> torch.Tensor:
        """Teacher forcing with probability ``ratio`` per position; elsewhere the model's own
        previous prediction (parallel scheduled sampling: one extra no-grad decoder pass)."""
        gold = ids[:, :-1]
        if ratio >= 1.0:
            return gold
        with torch.no_grad():
            pred = self.model.decoder(gold, memory, mem_mask, direction).argmax(-1)
        # Position t's input is the token predicted at t-1; <sos> and padding stay gold.
        sampled = torch.cat([gold[:, :1], pred[:, :-1]], 1)
        use_pred = torch.rand(gold.shape, device=gold.device) >= ratio
        use_pred[:, 0] = False
        return torch.where(use_pred & (gold != Vocab.pad_id), sampled, gold)

    def free_running_logits(self, memory: torch.Tensor, mem_mask: torch.Tensor | None,
                            steps: int, direction: int = L2R) -> torch.Tensor:
        """The competition baseline's unforced batch: decode step by step from the model's own
        argmax, keeping the gradient through every step's logits."""
        b = memory.shape[0]
        cache = self.model.start(memory, mem_mask, direction)
        prev = torch.full((b, 1), Vocab.sos_id, dtype=torch.long, device=memory.device)
        out = []
        for _ in range(steps):
            logits = self.model.step(prev, cache)
            out.append(logits)
            prev = logits.argmax(-1, keepdim=True).detach()
        return torch.stack(out, 1)

    def tf_ratio(self) -> float:
        total = int(self.trainer.estimated_stepping_batches) if self._trainer else 1
        return teacher_forcing_ratio(self.global_step, total, self.cfg.train)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        if self._seen_path:
            indices = " ".join(map(str, batch["index"].tolist()))
            with open(f"{self._seen_path}.rank{self.global_rank}", "a", encoding="utf-8") as f:
                f.write(f"{self.current_epoch}\t{indices}\n")

    def direction_loss(self, memory: torch.Tensor, mem_mask: torch.Tensor | None,
                       ids: torch.Tensor, ratio: float, direction: int = L2R) -> torch.Tensor:
        """The loss of reading ``ids`` (<sos> ... <eos> <pad>, already in reading order) in
        ``direction``, with the teacher-forcing mode and ratio of the run."""
        if self.cfg.train.tf_mode == "batch":
            if torch.rand(()).item() < ratio:
                logits = self.model.decoder(ids[:, :-1], memory, mem_mask, direction)
            else:
                logits = self.free_running_logits(memory, mem_mask, ids.shape[1] - 1, direction)
        elif self.cfg.train.tf_mode == "parallel":
            tgt_in = self.decoder_inputs(memory, mem_mask, ids, ratio, direction)
            logits = self.model.decoder(tgt_in, memory, mem_mask, direction)
        else:
            raise ValueError(f"train.tf_mode must be parallel or batch, "
                             f"not {self.cfg.train.tf_mode!r}")
        return sequence_loss(logits, ids[:, 1:], self.cfg.train.ignore_pad,
                             self.cfg.train.label_smoothing)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ids = batch["ids"]
        n = ids.shape[0]
        memory, mem_mask = self.model.encode(batch["images"], batch["mask"])
        ratio = self.tf_ratio()
        loss = self.direction_loss(memory, mem_mask, ids, ratio)
        self.log("train/teacher_forcing", ratio, batch_size=n)
        if self.cfg.model.bidirectional:
            # One encoder pass, the decoder run once per direction (BTTR).
            r2l = self.direction_loss(memory, mem_mask, reverse_sequences(ids), ratio, R2L)
            self.log("train/loss_l2r", loss, batch_size=n)
            self.log("train/loss_r2l", r2l, batch_size=n)
            loss = (loss + r2l) / 2
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        ids = batch["ids"]
        memory, mem_mask = self.model.encode(batch["images"], batch["mask"])
        logits = self.model.decoder(ids[:, :-1], memory, mem_mask)
        loss = sequence_loss(logits, ids[:, 1:], True)
        self.log("val/loss", loss, batch_size=ids.shape[0], sync_dist=True)  # left to right
        if self.cfg.model.bidirectional:
            rev = reverse_sequences(ids)
            r2l = sequence_loss(self.model.decoder(rev[:, :-1], memory, mem_mask, R2L),
                                rev[:, 1:], True)
            self.log("val/loss_r2l", r2l, batch_size=ids.shape[0], sync_dist=True)
        # The length budget of texlens.recognizer.Recognizer's greedy path (what evaluate
        # runs), never the truth's length: that would stop a run-on prediction for free.
        out, _ = greedy_decode(self.model, batch["images"], batch["mask"],
                               max_len=self.cfg.data.max_tokens)
        # A cut-off reading keeps its trailing loop once, as Recognizer._prediction does.
        self._preds += [self.vocab.decode(r if Vocab.eos_id in r else trim_runaway(r))
                        for r in out.tolist()]
        self._refs += [self.vocab.decode(r) for r in ids.tolist()]

    def validation_scores(self) -> dict[str, float]:
        """Metrics of the decoded validation samples plus ``val_unloadable`` (wrong)."""
        lost = self.val_unloadable
        return metrics.compute_all(self._preds + [[] for _ in lost], self._refs + list(lost))

    def on_validation_epoch_end(self) -> None:
        if self._refs:
            scores = self.validation_scores()
            for k in ("sentence_acc", "wer", "exprate_le1", "score"):
                self.log(f"val/{k}", float(scores[k]), prog_bar=k == "sentence_acc",
                         sync_dist=True)
        self._preds, self._refs = [], []

    def configure_optimizers(self):
        t = self.cfg.train
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            # Norm scales, biases and embeddings are not weights to shrink.
            (no_decay if p.ndim < 2 or "embed" in name else decay).append(p)
        if t.optimizer not in ("adamw", "adam"):
            raise ValueError(f"train.optimizer must be adamw or adam, not {t.optimizer!r}")
        # Adam adds weight decay to the gradient (L2); AdamW decays the weights directly.
        opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        opt = opt_cls([{"params": decay, "weight_decay": t.weight_decay},
                       {"params": no_decay, "weight_decay": 0.0}], lr=t.lr, betas=t.betas)
        total = int(self.trainer.estimated_stepping_batches)
        # By the clock too when the run has a time limit; one process only: ranks whose
        # clocks differ would step with different rates and drift apart.
        clock = self._time_spent if t.max_time_min and self.trainer.world_size == 1 else None
        sched = build_scheduler(opt, t, total, clock)
        if sched is None:
            return opt
        if t.scheduler == "plateau":  # steps on each validation's score, not every batch
            return {"optimizer": opt, "lr_scheduler": {
                "scheduler": sched, "monitor": "val/sentence_acc", "interval": "epoch",
                "frequency": 1, "strict": False}}
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _time_spent(self) -> float:
        """Share of train.max_time_min spent training (Lightning's Timer, which a resumed
        run restores); 0 before the trainer starts its clock."""
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        if timer is None or timer.start_time("train") is None:
            return 0.0
        return min(1.0, timer.time_elapsed("train") / (self.cfg.train.max_time_min * 60))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["texlens"] = meta(self.cfg, self.vocab)
        if self.train_formulas is not None:
            checkpoint[TRAIN_FORMULAS] = self.train_formulas
