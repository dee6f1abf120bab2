//! A family's pictures (sample grids, strips, GIFs): one figure for a single instance, and
//! for a swept family a row of figures per picture file, each titled by its sweep values,
//! so that the values are compared side by side instead of scrolled through.

use std::fmt::Write as _;
use std::path::Path;

use super::titles::{coordinates_title, AxisTitles};
use super::{base64, escape, file_safe, markdown, sweep_coordinates, IMAGES};
use crate::job::Input;

/// One member's copy of one picture file.
struct Picture<'a> {
    name: &'a str,
    input: &'a Input,
    file: String,
    bytes: Vec<u8>,
}

/// Writes the pictures of `members` into `img_dir` and their figures into the report.
pub fn write_pictures(
    md: &mut String,
    html: &mut String,
    img_dir: &Path,
    members: &[(&str, &Input)],
    titles: &AxisTitles,
) -> Result<(), String> {
    for img in &picture_files(members) {
        let img = img.as_str();
        let mut pictures = Vec::new();
        for (name, input) in members {
            let Ok(bytes) = std::fs::read(input.dir.join(img)) else { continue };
            std::fs::create_dir_all(img_dir).map_err(|e| format!("cannot create {}: {e}", img_dir.display()))?;
            let file = format!("{}_{img}", file_safe(name));
            std::fs::write(img_dir.join(&file), &bytes).map_err(|e| format!("cannot write an image: {e}"))?;
            pictures.push(Picture { name, input, file, bytes });
        }
        match pictures.as_slice() {
            [] => {}
            [one] => single(md, html, one, img),
            several => side_by_side(md, html, several, img, titles),
        }
    }
    Ok(())
}

/// The picture files of a family: the stages' own (grids, plots), then every PNG, SVG or
/// GIF a script wrote, by name.
fn picture_files(members: &[(&str, &Input)]) -> Vec<String> {
    let mut files: Vec<String> = IMAGES.iter().map(|i| i.to_string()).collect();
    let mut written: Vec<String> = members
        .iter()
        .filter(|(_, input)| input.kind == "script")
        .flat_map(|(_, input)| super::list(&input.dir))
        .filter(|f| is_picture(f) && !files.contains(f))
        .collect();
    written.sort();
    written.dedup();
    files.extend(written);
    files
}

/// Whether a file name is one of a picture the report shows.
pub fn is_picture(name: &str) -> bool {
    [".png", ".svg", ".gif"].iter().any(|ext| name.ends_with(ext))
}

fn mime(img: &str) -> &'static str {
    if img.ends_with(".gif") {
        "image/gif"
    } else if img.ends_with(".svg") {
        "image/svg+xml"
    } else {
        "image/png"
    }
}

fn single(md: &mut String, html: &mut String, p: &Picture, img: &str) {
    let reading = picture_legend(p.input, img).map(|l| format!(": {l}")).unwrap_or_default();
    let _ = write!(
        md,
        "\n![{}](images/{})\n\n{}{}\n",
        markdown::text(p.name),
        p.file,
        markdown::code(p.name),
        markdown::text(&reading)
    );
    let _ = writeln!(
        html,
        "<figure><img alt=\"{n}\" src=\"data:{};base64,{}\"><figcaption><code>{n}</code>{}</figcaption></figure>",
        mime(img),
        base64(&p.bytes),
        escape(&reading),
        n = escape(p.name)
    );
}

/// A row (wrapping on narrow screens) of one figure per member, titled by its sweep
/// values; how to read the pictures is said once, under the row.
fn side_by_side(md: &mut String, html: &mut String, pictures: &[Picture], img: &str, titles: &AxisTitles) {
    let heading = |p: &Picture| {
        let title = coordinates_title(titles, &sweep_coordinates(p.name));
        if title.is_empty() {
            p.name.to_string()
        } else {
            title
        }
    };
    // `markdown::text` escapes `|`, so the cells stay cells.
    let header: Vec<String> = pictures.iter().map(|p| markdown::text(&heading(p))).collect();
    let cells: Vec<String> =
        pictures.iter().map(|p| format!("![{}](images/{})", markdown::text(p.name), p.file)).collect();
    let _ = write!(md, "\n| {} |\n|{}\n| {} |\n", header.join(" | "), "---|".repeat(pictures.len()), cells.join(" | "));
    html.push_str("<div class=\"sweep\">\n");
    for p in pictures {
        let _ = writeln!(
            html,
            "<figure><figcaption class=\"value\" title=\"{n}\">{}</figcaption><img alt=\"{n}\" src=\"data:{};base64,{}\"></figure>",
            escape(&heading(p)),
            mime(img),
            base64(&p.bytes),
            n = escape(p.name)
        );
    }
    html.push_str("</div>\n");
    if let Some(legend) = picture_legend(pictures[0].input, img) {
        let _ = write!(md, "\n{}\n", markdown::text(&legend));
        let _ = writeln!(html, "<p class=\"legend\">{}</p>", escape(&legend));
    }
}

/// How to read a picture that has no axes of its own (strips of images), for its caption.
pub fn picture_legend(input: &Input, file: &str) -> Option<String> {
    match (input.kind.as_str(), input.variant.as_str(), file) {
        ("plot", "forward", _) => {
            let at: Vec<String> = input.params.get("at")?.as_array()?.iter().map(|t| t.to_string()).collect();
            Some(format!("one example per row, noised to t = {} from left to right", at.join(", ")))
        }
        ("plot", "trajectory", "plot.gif") => {
            Some("the reverse process from x_T to x_0, one frame per kept step: x_t above, the predicted x_0 below".into())
        }
        ("plot", "trajectory", _) => Some(
            "the reverse process from x_T (left) to x_0 (right): per sample (the first three), a row of x_t and a row of the predicted x_0"
                .into(),
        ),
        ("plot", "grid", _) => {
            Some("samples in one column per class, its label above (when they have 2 to 20 classes)".into())
        }
        _ => None,
    }
}
