"""outreach: portal news out to Facebook and Telegram, clicks back in."""
