"""Run `ddpm-verify check` over stock configurations of diffusers, guided-diffusion and lucidrains and
print the README's findings section (markdown); `--write README.md` replaces the section there.

diffusers DDPMScheduler: every variance_type x prediction_type x clip_sample and every
beta_schedule (full chain, plus its samplers of 10, 30, 37, 50 steps); after set_timesteps(n) for
every timestep_spacing x n in 10, 30, 37, 50, 1000 x three variance types; DDIMScheduler: every
spacing x n x prediction_type x set_alpha_to_one, and per spacing zero terminal SNR, no clipping,
thresholding, the cosine schedule; steps_offset=1 x n; DDIMInverseScheduler: leading and trailing x n.
guided-diffusion GaussianDiffusion: every ModelMeanType x ModelVarType x LossType on the linear and
cosine schedules, and respaced (250, ddim50, 10,15,20, 37, ddim25) x mean type x variance type.
lucidrains GaussianDiffusion: every schedule x objective x sampling_timesteps (all, 37) x min-SNR.
Also the wall time of one `ddpm-verify check` per kind of target (a fresh process, imports
included).

    python benchmarks/findings.py [--write README.md]
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
import warnings
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)

from ddpm_verify import conformance
from ddpm_verify.targets import resolve

START, END = "<!-- findings:start -->", "<!-- findings:end -->"


def diffusers_specs() -> list[str]:
    specs = [f"diffusers[variance_type={v},prediction_type={p},clip_sample={str(c).lower()}]"
             for v, p, c in itertools.product(("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log",
                                               "learned", "learned_range"), ("epsilon", "sample", "v_prediction"), (True, False))]
    specs += ["diffusers[beta_schedule=scaled_linear,beta_start=0.00085,beta_end=0.012]",
              "diffusers[beta_schedule=squaredcos_cap_v2]", "diffusers[beta_schedule=sigmoid]",
              "diffusers[rescale_betas_zero_snr=true,prediction_type=v_prediction]",
              "diffusers[num_train_timesteps=50]"]
    specs += [f"diffusers[thresholding=true,sample_max_value={m},prediction_type={p}]"
              for m, p in itertools.product((1.0, 2.0), ("epsilon", "sample", "v_prediction"))]
    return specs


def guided_specs() -> list[str]:
    return [f"guided-diffusion[schedule={s},mean_type={m},var_type={v},loss_type={loss}]"
            for s, m, v, loss in itertools.product(("linear", "cosine"), ("epsilon", "start_x", "previous_x"),
                                                   ("fixed_small", "fixed_large", "learned", "learned_range"),
                                                   ("mse", "rescaled_mse", "kl", "rescaled_kl"))]


COUNTS = (10, 30, 37, 50, 1000)
SPACINGS = ("leading", "linspace", "trailing")


def diffusers_sampler_specs() -> list[str]:
    specs = [f"diffusers[timestep_spacing={sp},num_inference_steps={n},variance_type={v}]"
             for sp, n, v in itertools.product(SPACINGS, COUNTS, ("fixed_small", "fixed_large", "learned_range"))]
    specs += [f"diffusers-ddim[timestep_spacing={sp},num_inference_steps={n},prediction_type={p},"
              f"set_alpha_to_one={str(a).lower()}]"
              for sp, n, p, a in itertools.product(SPACINGS, COUNTS, ("epsilon", "sample", "v_prediction"),
                                                   (True, False))]
    specs += [f"diffusers-ddim[timestep_spacing={sp},num_inference_steps=50,{extra}]"
              for sp, extra in itertools.product(SPACINGS, (
                  "rescale_betas_zero_snr=true,prediction_type=v_prediction", "clip_sample=false",
                  "thresholding=true,sample_max_value=2.0", "beta_schedule=squaredcos_cap_v2"))]
    specs += [f"diffusers-ddim[steps_offset=1,num_inference_steps={n}]" for n in COUNTS]
    specs += [f"diffusers-ddim-inverse[timestep_spacing={sp},num_inference_steps={n}]"
              for sp, n in itertools.product(("leading", "trailing"), COUNTS)]
    return specs


def guided_respaced_specs() -> list[str]:
    return [f"guided-diffusion[timestep_respacing={r},mean_type={m},var_type={v}]"
            for r, m, v in itertools.product(("250", "ddim50", "10/15/20", "37", "ddim25"),
                                             ("epsilon", "start_x", "previous_x"),
                                             ("fixed_small", "fixed_large", "learned", "learned_range"))]


def lucidrains_specs() -> list[str]:
    return [f"lucidrains[beta_schedule={s},objective={o},min_snr_loss_weight={str(m).lower()}"
            f"{f',sampling_timesteps={n}' if n else ''}]"
            for s, o, n, m in itertools.product(("linear", "cosine", "sigmoid"), ("pred_noise", "pred_x0", "pred_v"),
                                                (None, 37), (False, True))]


def sweep(specs: list[str]):
    """Over the configurations: counts of each check outcome; the failures and errors (with where
    they fail) and the precision notes of each check."""
    failures: dict[str, list[str]] = {}
    notes: dict[str, list[tuple[str, float, str]]] = {}
    counts = Counter()
    for spec in specs:
        for r in conformance.run(resolve(spec))[:len(conformance.CHECKS)]:
            counts[r.status] += 1
            if r.status in ("fail", "error"):
                where = f" at {r.where_failed}" if r.where_failed else ""
                detail = r.detail if "evidence" in r.detail else r.detail.split(";")[0]
                failures.setdefault(r.name, []).append(f"`{spec}`: {r.status}{where}: {detail}")
            elif r.status == "note":
                notes.setdefault(r.name, []).append((spec, r.worst_error, r.detail))
    return counts, failures, notes


def cli_seconds(spec: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ddpm_verify.cli", "check", spec], capture_output=True, check=False)
    return time.perf_counter() - start


def section() -> str:
    import diffusers

    lucidrains_version = resolve("lucidrains[beta_schedule=linear]").version
    lines = [START, "", "## Findings", "",
             "Generated by `python benchmarks/findings.py --write README.md` from a run of the checker "
             f"(ddpm-verify {__import__('ddpm_verify').__version__}, seed {__import__('ddpm_verify').SEED}).", ""]
    guided_version = resolve("guided-diffusion").version
    groups = (("diffusers `DDPMScheduler`", f"diffusers {diffusers.__version__}", diffusers_specs()),
              ("diffusers samplers with fewer steps: `DDPMScheduler.set_timesteps`, `DDIMScheduler`, "
               "`DDIMInverseScheduler`", f"diffusers {diffusers.__version__}", diffusers_sampler_specs()),
              ("guided-diffusion `GaussianDiffusion`", guided_version, guided_specs()),
              ("guided-diffusion respaced `SpacedDiffusion`", guided_version, guided_respaced_specs()),
              ("lucidrains `GaussianDiffusion`", lucidrains_version, lucidrains_specs()))
    for title, version, specs in groups:
        counts, failures, notes = sweep(specs)
        lines += [f"### {title} ({version})", "",
                  f"{len(specs)} configurations, {sum(counts.values())} checks: {counts['pass']} passed, "
                  f"{counts['note']} passed with a precision note, {counts['fail']} failed, {counts['error']} "
                  f"errored, {counts['skip']} skipped (operation not provided, or not applicable).", ""]
        if failures:
            lines.append("Failures (bugs):")
            lines.append("")
            for check, where in sorted(failures.items()):
                lines.append(f"- {check}: fails in {len(where)} configuration{'s' * (len(where) != 1)}, e.g. {where[0]}")
            lines.append("")
        else:
            lines += ["No failures.", ""]
        for check, items in sorted(notes.items()):
            spec, err, detail = max(items, key=lambda i: i[1])
            lines.append(f"- Precision note, {check}: in {len(items)} configurations; largest absolute error "
                         f"{err:.3g} in the check's units ({detail.split(';')[0].removeprefix('precision note: ')}).")
        if notes:
            lines.append("")
    lines += ["### Time of one `ddpm-verify check` (a fresh process, imports included)", "",
              "| target | seconds |", "|---|---|"]
    for spec in ("diffusers", "diffusers-ddim", "guided-diffusion", "guided-diffusion[timestep_respacing=250]",
                 "lucidrains[beta_schedule=cosine,sampling_timesteps=50]"):
        lines.append(f"| `{spec}` | {cli_seconds(spec):.1f} |")
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="README", help="replace the findings section of this file")
    args = parser.parse_args()
    text = section()
    print(text)
    if args.write:
        with open(args.write) as fh:
            readme = fh.read()
        if START in readme:
            head, rest = readme.split(START, 1)
            readme = head + text + rest.split(END, 1)[1]
        else:
            readme = readme.rstrip() + "\n\n" + text + "\n"
        with open(args.write, "w") as fh:
            fh.write(readme)


if __name__ == "__main__":
    main()
