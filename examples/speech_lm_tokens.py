"""VRVQ codes as tokens for a speech language model: encode, train one step, generate, decode.

    python examples/speech_lm_tokens.py [--model PATH_OR_HUB_ID] [--level 1.0]

Uses the model shipped with vrvq_hf (or --model) and a small, randomly initialised Llama built from a
config (nothing is downloaded). Each frame becomes <frame:n> followed by its n codes, so variable-bitrate
frames cost the LM only the tokens they carry.
"""

import argparse

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import vrvq_hf
from vrvq_hf import VRVQFeatureExtractor, VRVQModel
from vrvq_hf.tokens import TokenVocabulary, codes_to_padded_tokens, tokens_for_counts, tokens_to_codes


def frame_grammar(vocab: TokenVocabulary):
    """For `generate(prefix_allowed_tokens_fn=...)`: after <frame:n> come codes of codebooks 0..n-1, then
    the next frame token or <eos>. (Without it an untrained LM writes mostly malformed frames.)"""
    frame_or_end = [*range(vocab.frame_offset, vocab.code_offset), vocab.eos_id]

    def allowed(_: int, sequence: torch.Tensor) -> list[int]:
        is_frame = (sequence >= vocab.frame_offset) & (sequence < vocab.code_offset)
        start = int(torch.nonzero(is_frame).max())  # the current frame's token
        codebook = len(sequence) - start - 1  # codes it has so far
        if codebook < int(sequence[start]) - vocab.frame_offset + 1:
            first = vocab.code_offset + codebook * vocab.codebook_size
            return list(range(first, first + vocab.codebook_size))
        return frame_or_end

    return allowed


def main(model: str | None = None, level: float = 1.0, prompt_frames: int = 10, new_frames: int = 4) -> dict:
    torch.manual_seed(0)
    codec = VRVQModel.from_pretrained(model).eval() if model else vrvq_hf.load_default_model()
    rate, hop = codec.config.sampling_rate, codec.config.hop_length

    # 1. A batch of clips of different lengths (tones standing in for speech) -> variable-bitrate codes.
    clips = [0.3 * np.sin(2 * np.pi * f * np.arange(frames * hop - 5) / rate).astype(np.float32)
             for f, frames in ((220, 40), (330, 55), (440, 70))]
    inputs = VRVQFeatureExtractor.from_model_config(codec.config)(clips, sampling_rate=rate)
    with torch.inference_mode():
        encoded = codec.encode(inputs["input_values"], inputs["padding_mask"], level=level)

    # 2. Codes -> flat token sequences "<bos> <frame:n> code ... <eos>", right-padded into a batch.
    vocab = TokenVocabulary.from_config(codec.config)
    batch = codes_to_padded_tokens(encoded.audio_codes, encoded.num_codebooks, vocab)

    # 3. A small causal LM over this vocabulary, and one training step (padding masked out of the loss).
    lm = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
        pad_token_id=vocab.pad_id, bos_token_id=vocab.bos_id, eos_token_id=vocab.eos_id,
    ))
    optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-3)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = lm(**batch, labels=labels).loss
    loss.backward()
    optimizer.step()

    # 4. Continue the first clip for a few frames; tokens -> codes (strict=False repairs a frame cut off
    #    by max_new_tokens) -> audio.
    prompt_length = tokens_for_counts(encoded.num_codebooks[0, :prompt_frames]) - 1  # without <eos>
    prompt = batch["input_ids"][:1, :prompt_length]
    lm.eval()
    with torch.inference_mode():
        generated = lm.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                prefix_allowed_tokens_fn=frame_grammar(vocab), pad_token_id=vocab.pad_id,
                                max_new_tokens=new_frames * (vocab.n_codebooks + 1))
        codes, counts = tokens_to_codes(generated, vocab, strict=False)
        audio = codec.decode(codes, num_codebooks=counts).audio_values

    print(f"{len(clips)} clips -> token sequences of {batch['attention_mask'].sum(dim=1).tolist()} tokens "
          f"(vocabulary {vocab.vocab_size}); training loss {loss.item():.3f}")
    print(f"generated {generated.shape[1] - prompt_length} tokens -> {counts.shape[1]} frames "
          f"({prompt_frames} from the prompt) -> {audio.shape[-1] / rate:.3f} s of audio")
    return {"encoded": encoded, "batch": batch, "vocab": vocab, "loss": loss.item(),
            "generated": generated, "codes": codes, "counts": counts, "audio": audio}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="VRVQ model folder or hub id (default: the shipped model)")
    parser.add_argument("--level", type=float, default=1.0, help="variable-bitrate level (default 1.0)")
    args = parser.parse_args()
    main(args.model, args.level)
