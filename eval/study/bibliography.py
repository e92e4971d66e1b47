"""The chapter's bibliography: paper metadata kept by the project and written out as BibTeX.

Each entry is the metadata of one paper (authors, title, venue, year, and where it appeared);
:func:`bibtex` writes the entries a chapter cites. Methods are cited through :data:`METHOD_PAPERS`;
a method the table does not know is cited with a ``@misc`` entry made from its ``paper`` and
``paper_url`` attributes, so every cited key is always in the written ``.bib``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["PAPERS", "Paper", "bibtex", "method_keys", "short_cite"]


@dataclass(frozen=True)
class Paper:
    kind: str  # inproceedings | article | book | misc
    authors: tuple[str, ...]  # "First Last" each
    title: str
    year: int
    venue: str = ""  # booktitle, journal, or publisher (book)
    extra: dict[str, str] = field(default_factory=dict)  # volume, number, pages, eprint, url, note


def _p(kind: str, authors: str, title: str, year: int, venue: str = "", **extra: str) -> Paper:
    return Paper(kind, tuple(a.strip() for a in authors.split(";")), title, year, venue, dict(extra))


PAPERS: dict[str, Paper] = {
    # methods
    "kingma2014vae": _p(
        "inproceedings",
        "Diederik P. Kingma; Max Welling",
        "Auto-Encoding Variational {B}ayes",
        2014,
        "International Conference on Learning Representations (ICLR)",
    ),
    "sohn2015cvae": _p(
        "inproceedings",
        "Kihyuk Sohn; Honglak Lee; Xinchen Yan",
        "Learning Structured Output Representation using Deep Conditional Generative Models",
        2015,
        "Advances in Neural Information Processing Systems (NeurIPS)",
    ),
    "wu2016gan3d": _p(
        "inproceedings",
        "Jiajun Wu; Chengkai Zhang; Tianfan Xue; William T. Freeman; Joshua B. Tenenbaum",
        "Learning a Probabilistic Latent Space of Object Shapes via {3D} Generative-Adversarial Modeling",
        2016,
        "Advances in Neural Information Processing Systems (NeurIPS)",
    ),
    "miyato2018spectral": _p(
        "inproceedings",
        "Takeru Miyato; Toshiki Kataoka; Masanori Koyama; Yuichi Yoshida",
        "Spectral Normalization for Generative Adversarial Networks",
        2018,
        "International Conference on Learning Representations (ICLR)",
    ),
    "miyato2018projection": _p(
        "inproceedings",
        "Takeru Miyato; Masanori Koyama",
        "c{GAN}s with Projection Discriminator",
        2018,
        "International Conference on Learning Representations (ICLR)",
    ),
    "ho2020ddpm": _p(
        "inproceedings",
        "Jonathan Ho; Ajay Jain; Pieter Abbeel",
        "Denoising Diffusion Probabilistic Models",
        2020,
        "Advances in Neural Information Processing Systems (NeurIPS)",
    ),
    "song2021ddim": _p(
        "inproceedings",
        "Jiaming Song; Chenlin Meng; Stefano Ermon",
        "Denoising Diffusion Implicit Models",
        2021,
        "International Conference on Learning Representations (ICLR)",
    ),
    "song2021sde": _p(
        "inproceedings",
        "Yang Song; Jascha Sohl-Dickstein; Diederik P. Kingma; Abhishek Kumar; Stefano Ermon; Ben Poole",
        "Score-Based Generative Modeling through Stochastic Differential Equations",
        2021,
        "International Conference on Learning Representations (ICLR)",
    ),
    "mildenhall2020nerf": _p(
        "inproceedings",
        "Ben Mildenhall; Pratul P. Srinivasan; Matthew Tancik; Jonathan T. Barron; Ravi Ramamoorthi; Ren Ng",
        "{NeRF}: Representing Scenes as Neural Radiance Fields for View Synthesis",
        2020,
        "European Conference on Computer Vision (ECCV)",
    ),
    "kerbl2023gaussian": _p(
        "article",
        'Bernhard Kerbl; Georgios Kopanas; Thomas Leimk{\\"u}hler; George Drettakis',
        "{3D} {G}aussian Splatting for Real-Time Radiance Field Rendering",
        2023,
        "ACM Transactions on Graphics",
        volume="42",
        number="4",
    ),
    "jun2023shape": _p(
        "misc",
        "Heewoo Jun; Alex Nichol",
        "{Shap-E}: Generating Conditional {3D} Implicit Functions",
        2023,
        eprint="2305.02463",
        archiveprefix="arXiv",
    ),
    "nichol2022pointe": _p(
        "misc",
        "Alex Nichol; Heewoo Jun; Prafulla Dhariwal; Pamela Mishkin; Mark Chen",
        "{Point-E}: A System for Generating {3D} Point Clouds from Complex Prompts",
        2022,
        eprint="2212.08751",
        archiveprefix="arXiv",
    ),
    "poole2023dreamfusion": _p(
        "inproceedings",
        "Ben Poole; Ajay Jain; Jonathan T. Barron; Ben Mildenhall",
        "{DreamFusion}: Text-to-{3D} using {2D} Diffusion",
        2023,
        "International Conference on Learning Representations (ICLR)",
    ),
    "jain2022dreamfields": _p(
        "inproceedings",
        "Ajay Jain; Ben Mildenhall; Jonathan T. Barron; Pieter Abbeel; Ben Poole",
        "Zero-Shot Text-Guided Object Generation with Dream Fields",
        2022,
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
    ),
    "tochilkin2024triposr": _p(
        "misc",
        "Dmitry Tochilkin; David Pankratz; Zexiang Liu; Zixuan Huang; Adam Letts; Yangguang Li; Ding Liang; "
        "Christian Laforte; Varun Jampani; Yan-Pei Cao",
        "{TripoSR}: Fast {3D} Object Reconstruction from a Single Image",
        2024,
        eprint="2403.02151",
        archiveprefix="arXiv",
    ),
    # metrics and statistics
    "radford2021clip": _p(
        "inproceedings",
        "Alec Radford; Jong Wook Kim; Chris Hallacy; Aditya Ramesh; Gabriel Goh; Sandhini Agarwal; Girish Sastry; "
        "Amanda Askell; Pamela Mishkin; Jack Clark; Gretchen Krueger; Ilya Sutskever",
        "Learning Transferable Visual Models From Natural Language Supervision",
        2021,
        "International Conference on Machine Learning (ICML)",
    ),
    "hessel2021clipscore": _p(
        "inproceedings",
        "Jack Hessel; Ari Holtzman; Maxwell Forbes; Ronan Le Bras; Yejin Choi",
        "{CLIPScore}: A Reference-free Evaluation Metric for Image Captioning",
        2021,
        "Conference on Empirical Methods in Natural Language Processing (EMNLP)",
    ),
    "park2021benchmark": _p(
        "inproceedings",
        "Dong Huk Park; Samaneh Azadi; Xihui Liu; Trevor Darrell; Anna Rohrbach",
        "Benchmark for Compositional Text-to-Image Synthesis",
        2021,
        "NeurIPS Datasets and Benchmarks Track",
    ),
    "fan2017point": _p(
        "inproceedings",
        "Haoqiang Fan; Hao Su; Leonidas J. Guibas",
        "A Point Set Generation Network for {3D} Object Reconstruction from a Single Image",
        2017,
        "IEEE Conference on Computer Vision and Pattern Recognition (CVPR)",
    ),
    "tatarchenko2019single": _p(
        "inproceedings",
        "Maxim Tatarchenko; Stephan R. Richter; Ren{\\'e} Ranftl; Zhuwen Li; Vladlen Koltun; Thomas Brox",
        "What Do Single-view {3D} Reconstruction Networks Learn?",
        2019,
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
    ),
    "mescheder2019occupancy": _p(
        "inproceedings",
        "Lars Mescheder; Michael Oechsle; Michael Niemeyer; Sebastian Nowozin; Andreas Geiger",
        "Occupancy Networks: Learning {3D} Reconstruction in Function Space",
        2019,
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
    ),
    "wang2004ssim": _p(
        "article",
        "Zhou Wang; Alan C. Bovik; Hamid R. Sheikh; Eero P. Simoncelli",
        "Image Quality Assessment: From Error Visibility to Structural Similarity",
        2004,
        "IEEE Transactions on Image Processing",
        volume="13",
        number="4",
        pages="600--612",
    ),
    "zhang2018lpips": _p(
        "inproceedings",
        "Richard Zhang; Phillip Isola; Alexei A. Efros; Eli Shechtman; Oliver Wang",
        "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
        2018,
        "IEEE Conference on Computer Vision and Pattern Recognition (CVPR)",
    ),
    "efron1993bootstrap": _p(
        "book", "Bradley Efron; Robert J. Tibshirani", "An Introduction to the Bootstrap", 1993, "Chapman \\& Hall"
    ),
    "kendall1938tau": _p(
        "article",
        "Maurice G. Kendall",
        "A New Measure of Rank Correlation",
        1938,
        "Biometrika",
        volume="30",
        number="1/2",
        pages="81--93",
    ),
    "bradley1952rank": _p(
        "article",
        "Ralph Allan Bradley; Milton E. Terry",
        "Rank Analysis of Incomplete Block Designs: {I}. {T}he Method of Paired Comparisons",
        1952,
        "Biometrika",
        volume="39",
        number="3/4",
        pages="324--345",
    ),
}

# method id -> the papers it implements (the first is the method's own)
METHOD_PAPERS: dict[str, tuple[str, ...]] = {
    "vae": ("kingma2014vae", "sohn2015cvae"),
    "gan": ("wu2016gan3d", "miyato2018spectral", "miyato2018projection"),
    "ddpm": ("ho2020ddpm", "song2021ddim"),
    "score-sde": ("song2021sde",),
    "nerf": ("mildenhall2020nerf",),
    "gaussian-splatting": ("kerbl2023gaussian",),
    "shap-e": ("jun2023shape",),
    "point-e": ("nichol2022pointe",),
    "dreamfusion": ("poole2023dreamfusion",),
    "dreamfields": ("jain2022dreamfields",),
    "triposr": ("tochilkin2024triposr",),
}


def method_keys(method) -> tuple[str, ...]:
    """The citation keys of a method (an object with ``id``, ``paper``, ``paper_url``), always in :func:`bibtex`."""
    if method.id in METHOD_PAPERS:
        return METHOD_PAPERS[method.id]
    return (f"method-{re.sub(r'[^a-z0-9]+', '-', method.id.lower()).strip('-')}",) if method.paper else ()


def _misc_for(method) -> Paper:
    return Paper("misc", (), method.paper, 0, extra={"url": method.paper_url} if method.paper_url else {})


def _surname(author: str) -> str:
    return author.split()[-1] if author else ""


def short_cite(key: str, methods_by_key: dict[str, object] | None = None) -> str:
    """Author-year text for Markdown: "Kingma & Welling, 2014", "Ho et al., 2020"."""
    paper = PAPERS.get(key)
    if paper is None:
        method = (methods_by_key or {}).get(key)
        return getattr(method, "paper", key) or key
    names = [_plain(_surname(a)) for a in paper.authors]
    who = names[0] if len(names) == 1 else " & ".join(names) if len(names) == 2 else f"{names[0]} et al."
    return f"{who}, {paper.year}"


def reference_text(key: str, methods_by_key: dict[str, object] | None = None) -> str:
    """One plain-text reference line for the Markdown chapter."""
    paper = PAPERS.get(key)
    if paper is None:
        method = (methods_by_key or {}).get(key)
        url = getattr(method, "paper_url", "")
        return f"{getattr(method, 'paper', key)}" + (f". {url}" if url else "")
    authors = ", ".join(_plain(a) for a in paper.authors)
    where = paper.venue or (f"arXiv:{paper.extra['eprint']}" if "eprint" in paper.extra else "")
    volume = f" {paper.extra['volume']}" if "volume" in paper.extra else ""
    number = f"({paper.extra['number']})" if "number" in paper.extra else ""
    pages = f", pp. {paper.extra['pages'].replace('--', '–')}" if "pages" in paper.extra else ""
    return f"{authors}. {_plain(paper.title)}. {_plain(where)}{volume}{number}{pages}, {paper.year}."


def _plain(text: str) -> str:
    for tex, char in (('{\\"u}', "ü"), ("{\\'e}", "é"), ("\\&", "&")):
        text = text.replace(tex, char)
    return text.replace("{", "").replace("}", "")


def bibtex(keys: list[str], methods_by_key: dict[str, object] | None = None) -> str:
    """The BibTeX entries of ``keys`` (in that order, each once)."""
    out = ["% Written by `python -m eval study report --chapter` from the project's paper metadata.", ""]
    for key in dict.fromkeys(keys):
        paper = PAPERS.get(key)
        if paper is None:
            method = (methods_by_key or {}).get(key)
            if method is None:
                raise KeyError(f"no paper metadata for citation key {key!r}")
            paper = _misc_for(method)
        fields: list[tuple[str, str]] = []
        if paper.authors:
            fields.append(("author", " and ".join(paper.authors)))
        fields.append(("title", "{" + _bib_text(paper.title) + "}"))
        if paper.venue:
            name = {"inproceedings": "booktitle", "article": "journal", "book": "publisher"}.get(paper.kind, "note")
            fields.append((name, paper.venue))
        if paper.year:
            fields.append(("year", str(paper.year)))
        fields += [(k, _bib_text(v) if k != "url" else v) for k, v in paper.extra.items()]
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
        out.append(f"@{paper.kind}{{{key},\n{body}\n}}\n")
    return "\n".join(out)


def _bib_text(text: str) -> str:
    """Escape what BibTeX passes on to LaTeX unchanged: bare special characters of free text."""
    return re.sub(r"(?<!\\)([&%#_$])", r"\\\1", text)
