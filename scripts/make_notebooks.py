"""Write the papermill templates in notebooks/ (outputs cleared); their parameters cells are built
from RunConfig, so they never drift from it. Run after changing a RunConfig field:

    .venv/bin/python scripts/make_notebooks.py
"""
import dataclasses, re
import nbformat as nbf
from moon.config import RunConfig

src = open("moon/config.py").read()
comments = dict(re.findall(r"^    (\w+): [^=]+= [^#\n]+#\s*(.*)$", src, re.M))
lines = ["# Parameters (papermill): every RunConfig field, plus `preset` and `out_dir`.",
         "# A field left at its default is filled by the preset, if one is given.",
         'preset = None                       # None | "smoke" | "quick" | "full"',
         'out_dir = "runs/ood_eval"          # where result.json (and the checkpoints) go']
for f in dataclasses.fields(RunConfig):
    value = repr(f.default)
    lines.append(f"{f.name} = {value}".ljust(36) + f"# {comments.get(f.name, '')}".rstrip())
nb = nbf.v4.new_notebook()
nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
nb.cells = [
    nbf.v4.new_markdown_cell(
        "# One run: train, evaluate, look\n\n"
        "**Question.** How accurate, how well calibrated and how good at spotting OOD inputs is one "
        "configuration of sparse training, with or without MOON?\n\n"
        "**Default.** MOON on RigL at density 0.05, LeNet-5 on the embedded Fashion-MNIST benchmark, "
        "20 epochs: a few minutes on a 2-core CPU (`-p preset smoke`: under a minute). A finished run "
        "in `out_dir` with the same configuration is reused, not retrained.\n\n"
        "**What to look at.** The ID metrics (accuracy, NLL, Brier, ECE over the K known classes), "
        "the OOD tables (AUROC and FPR@95%TPR, in %, for every detector on every OOD set, with the "
        "near and far means), the reliability diagram, and the score histograms of ID test images "
        "against each OOD set.\n\n"
        "```\npapermill notebooks/ood_eval.ipynb out.ipynb -p density 0.02 -p method set\n```"),
    nbf.v4.new_code_cell("\n".join(lines), metadata={"tags": ["parameters"]}),
    nbf.v4.new_code_cell(
        "import moon\nfrom moon import figures, report\nfrom moon.config import from_namespace\n\n"
        "cfg = from_namespace(globals(), preset)\n"
        "result = moon.run(cfg.replace(resume=True), out_dir)\n"
        "print(f\"{result.status}: {out_dir}/result.json, measured density {result.masks['density']:.4f}\")\n"
        "report.id_table(result)"),
    nbf.v4.new_code_cell("report.ood_table(result, \"auroc\")"),
    nbf.v4.new_code_cell("report.ood_table(result, \"fpr95\")"),
    nbf.v4.new_code_cell("figures.reliability_diagram(result)"),
    nbf.v4.new_code_cell("figures.score_histograms(result, \"msp\")"),
    nbf.v4.new_code_cell("figures.plot_history(result)"),
]
nbf.write(nb, "notebooks/ood_eval.ipynb")
