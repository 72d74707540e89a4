//! Draws a job's items onto its image: translucent filled polygons, box outlines, and a
//! label (category and score) in DejaVu Sans.

use ab_glyph::{FontRef, PxScale};
use image::{GrayImage, Luma, Rgb, RgbImage};
use imageproc::drawing::{
    draw_filled_rect_mut, draw_hollow_polygon_mut, draw_hollow_rect_mut, draw_polygon_mut,
    draw_text_mut, text_size,
};
use imageproc::point::Point;
use imageproc::rect::Rect;

use crate::document::Item;
use crate::error::CliError;

/// DejaVu Sans (Bitstream Vera licence, see `assets/DejaVuSans.LICENSE`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Opacity of the mask fill.
const FILL_ALPHA: f32 = 0.45;

/// Distinct, saturated colours; an item's colour follows its category.
const PALETTE: [[u8; 3]; 12] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 170, 0],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [0, 128, 128],
    [170, 110, 40],
    [128, 0, 0],
];

pub fn color_for(category_id: i64) -> Rgb<u8> {
    Rgb(PALETTE[category_id.rem_euclid(PALETTE.len() as i64) as usize])
}

/// Renders `items` onto a copy of `image`. Coordinates are scaled when the items were
/// computed on an image of another size (`item.size`).
pub fn render(image: &RgbImage, items: &[Item]) -> Result<RgbImage, CliError> {
    let font = FontRef::try_from_slice(FONT).map_err(CliError::Font)?;
    let mut canvas = image.clone();
    let (w, h) = canvas.dimensions();
    if w == 0 || h == 0 {
        return Ok(canvas);
    }
    let short_side = w.min(h) as f32;
    let thickness = (short_side / 300.0).round().max(2.0) as i32;
    let scale = PxScale::from((short_side / 32.0).clamp(12.0, 48.0));

    // Lowest score first, so the best items end up on top.
    let mut ordered: Vec<&Item> = items.iter().collect();
    ordered.sort_by(|a, b| a.score.total_cmp(&b.score));

    for item in &ordered {
        let color = color_for(item.category_id);
        let (sx, sy) = scale_factors(item, w, h);
        for polygon in &item.polygons {
            let points: Vec<(f32, f32)> = polygon
                .iter()
                .map(|[x, y]| ((*x * sx) as f32, (*y * sy) as f32))
                .collect();
            fill_polygon(&mut canvas, &points, color);
            outline_polygon(&mut canvas, &points, color);
        }
    }
    for item in &ordered {
        let color = color_for(item.category_id);
        let (sx, sy) = scale_factors(item, w, h);
        let [bx, by, bw, bh] = item.bbox;
        let (x, y) = ((bx * sx).round() as i32, (by * sy).round() as i32);
        let (rw, rh) = ((bw * sx).round() as i32, (bh * sy).round() as i32);
        for t in 0..thickness {
            let (tw, th) = (rw - 2 * t, rh - 2 * t);
            if tw > 0 && th > 0 {
                draw_hollow_rect_mut(
                    &mut canvas,
                    Rect::at(x + t, y + t).of_size(tw as u32, th as u32),
                    color,
                );
            }
        }
        let text = label(item);
        draw_label(&mut canvas, &font, scale, (x, y), &text, color);
    }
    Ok(canvas)
}

/// `orange 0.93`.
pub fn label(item: &Item) -> String {
    format!("{} {:.2}", item.category_name.replace('_', " "), item.score)
}

fn scale_factors(item: &Item, w: u32, h: u32) -> (f64, f64) {
    let [iw, ih] = item.size;
    if iw == 0 || ih == 0 {
        return (1.0, 1.0);
    }
    (f64::from(w) / f64::from(iw), f64::from(h) / f64::from(ih))
}

/// Blends `color` into the pixels inside the polygon.
fn fill_polygon(canvas: &mut RgbImage, points: &[(f32, f32)], color: Rgb<u8>) {
    if points.len() < 3 {
        return;
    }
    let (w, h) = canvas.dimensions();
    let min_x = points
        .iter()
        .map(|p| p.0)
        .fold(f32::MAX, f32::min)
        .floor()
        .max(0.0);
    let min_y = points
        .iter()
        .map(|p| p.1)
        .fold(f32::MAX, f32::min)
        .floor()
        .max(0.0);
    let max_x = points.iter().map(|p| p.0).fold(f32::MIN, f32::max).ceil();
    let max_y = points.iter().map(|p| p.1).fold(f32::MIN, f32::max).ceil();
    let max_x = max_x.min(w as f32 - 1.0);
    let max_y = max_y.min(h as f32 - 1.0);
    if max_x < min_x || max_y < min_y {
        return;
    }
    let (ox, oy) = (min_x as i32, min_y as i32);
    let mut mask = GrayImage::new((max_x - min_x) as u32 + 1, (max_y - min_y) as u32 + 1);
    let mut local: Vec<Point<i32>> = points
        .iter()
        .map(|p| Point::new(p.0.round() as i32 - ox, p.1.round() as i32 - oy))
        .collect();
    if local.len() > 1 && local.first() == local.last() {
        local.pop();
    }
    draw_polygon_mut(&mut mask, &local, Luma([255]));
    for (mx, my, m) in mask.enumerate_pixels() {
        if m.0[0] == 0 {
            continue;
        }
        let px = canvas.get_pixel_mut(mx + ox as u32, my + oy as u32);
        for c in 0..3 {
            let blended =
                f32::from(px.0[c]) * (1.0 - FILL_ALPHA) + f32::from(color.0[c]) * FILL_ALPHA;
            px.0[c] = blended.round().clamp(0.0, 255.0) as u8;
        }
    }
}

fn outline_polygon(canvas: &mut RgbImage, points: &[(f32, f32)], color: Rgb<u8>) {
    if points.len() < 2 {
        return;
    }
    let pts: Vec<Point<f32>> = points.iter().map(|p| Point::new(p.0, p.1)).collect();
    draw_hollow_polygon_mut(canvas, &pts, color);
}

/// A filled tag above the box's top-left corner (inside the box when there is no room).
fn draw_label(
    canvas: &mut RgbImage,
    font: &FontRef<'_>,
    scale: PxScale,
    (x, y): (i32, i32),
    text: &str,
    color: Rgb<u8>,
) {
    let (tw, th) = text_size(scale, font, text);
    let pad = (scale.y / 6.0).round().max(2.0) as i32;
    let (bw, bh) = (tw as i32 + 2 * pad, th as i32 + 2 * pad);
    let (w, h) = canvas.dimensions();
    let left = x.clamp(0, (w as i32 - bw).max(0));
    let top = if y - bh >= 0 { y - bh } else { y.max(0) };
    let top = top.min((h as i32 - bh).max(0));
    draw_filled_rect_mut(
        canvas,
        Rect::at(left, top).of_size(bw.max(1) as u32, bh.max(1) as u32),
        color,
    );
    draw_text_mut(
        canvas,
        text_color(color),
        left + pad,
        top + pad,
        scale,
        font,
        text,
    );
}

/// Black on light colours, white on dark ones.
fn text_color(bg: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = bg.0.map(f32::from);
    if 0.299 * r + 0.587 * g + 0.114 * b > 150.0 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREY: Rgb<u8> = Rgb([100, 100, 100]);

    fn square_item(size: [u32; 2]) -> Item {
        Item {
            id: 0,
            image_id: "a.png".into(),
            category_id: 55,
            category_name: "orange".into(),
            score: 0.93,
            bbox: [40.0, 60.0, 60.0, 60.0],
            area: 3600.0,
            iscrowd: 0,
            polygons: vec![vec![
                [40.0, 60.0],
                [100.0, 60.0],
                [100.0, 120.0],
                [40.0, 120.0],
            ]],
            size,
        }
    }

    fn count_changed(a: &RgbImage, b: &RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                if a.get_pixel(x, y) != b.get_pixel(x, y) {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn fills_the_polygon_translucently_and_leaves_the_rest() {
        let base = RgbImage::from_pixel(200, 160, GREY);
        let out = render(&base, &[square_item([200, 160])]).unwrap();
        let expected = color_for(55)
            .0
            .map(|c| (100.0 * (1.0 - FILL_ALPHA) + f32::from(c) * FILL_ALPHA).round() as u8);
        assert_eq!(out.get_pixel(70, 90).0, expected, "inside is blended");
        assert_eq!(out.get_pixel(150, 150), &GREY, "far outside is untouched");
        assert_eq!(out.get_pixel(5, 5), &GREY);
        assert_eq!(
            out.get_pixel(40, 100),
            &color_for(55),
            "box outline is solid"
        );
    }

    #[test]
    fn draws_a_label_with_glyphs_above_the_box() {
        let base = RgbImage::from_pixel(200, 160, GREY);
        let out = render(&base, &[square_item([200, 160])]).unwrap();
        // The tag sits above y = 60; text pixels differ from the tag colour.
        let band: Vec<Rgb<u8>> = (30..60)
            .flat_map(|y| (40..120).map(move |x| (x, y)))
            .map(|(x, y)| *out.get_pixel(x, y))
            .collect();
        assert!(band.contains(&color_for(55)), "tag background");
        assert!(
            band.iter().any(|p| *p != color_for(55) && *p != GREY),
            "glyph pixels"
        );
    }

    #[test]
    fn scales_items_computed_on_another_size() {
        let base = RgbImage::from_pixel(100, 80, GREY);
        let out = render(&base, &[square_item([200, 160])]).unwrap();
        // The square maps to (20..50, 30..60).
        assert_ne!(out.get_pixel(35, 45), &GREY);
        assert_eq!(count_changed(&base, &out, 60, 65, 100, 80), 0);
    }

    #[test]
    fn tolerates_degenerate_and_out_of_bounds_geometry() {
        let base = RgbImage::from_pixel(50, 50, GREY);
        let mut item = square_item([50, 50]);
        item.polygons = vec![
            vec![],
            vec![[1.0, 1.0]],
            vec![[-100.0, -100.0], [500.0, -50.0], [200.0, 400.0]],
        ];
        item.bbox = [-10.0, 45.0, 0.0, 1000.0];
        let out = render(&base, &[item]).unwrap();
        assert_eq!(out.dimensions(), (50, 50));
        assert!(render(&RgbImage::new(0, 0), &[square_item([0, 0])]).is_ok());
    }

    #[test]
    fn colours_follow_categories() {
        assert_eq!(color_for(3), color_for(3 + PALETTE.len() as i64));
        assert_ne!(color_for(1), color_for(2));
        assert_eq!(color_for(-1), color_for(PALETTE.len() as i64 - 1));
        assert_eq!(label(&square_item([1, 1])), "orange 0.93");
    }
}
